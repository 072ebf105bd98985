"""The gateway's API keys: each with a name (what the access log and the limits use, never the secret) and,
optionally, limits of its own."""

import hashlib
import re

from ansible.errors import AnsibleFilterError

SECRET = re.compile(r"^[A-Za-z0-9._~+/=-]{16,}$")
NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
RATE = re.compile(r"^[1-9][0-9]*r/[sm]$")
FIELDS = ("name", "key", "connections", "rate")
NEW_FORM = '{name: team-a, key: "<16+ characters>", connections: 8, rate: "5r/s"} (connections and rate optional)'


def default_name(secret):
    """A key's name when the inventory gives none: nothing of the secret but a hash's first 8 hex digits."""
    return "key-" + hashlib.sha256(secret.encode()).hexdigest()[:8]


def _entry(entry, where):
    """(key dict, errors) for one inventory entry."""
    if isinstance(entry, str):
        entry = {"key": entry}
    if not isinstance(entry, dict):
        return None, [f"{where}: a key is a string or {NEW_FORM}, got {type(entry).__name__}"]
    errors = [f"{where}: unknown field {k!r}; valid: {', '.join(FIELDS)}" for k in sorted(set(entry) - set(FIELDS))]
    secret = entry.get("key")
    if not isinstance(secret, str) or not SECRET.match(secret):
        size = len(secret) if isinstance(secret, str) else "no"
        errors.append(f"{where}: key ({size} characters) is not 16+ characters of A-Z a-z 0-9 . _ ~ + / = -")
        secret = None
    name = entry.get("name", default_name(secret) if secret else None)
    if name is not None and (not isinstance(name, str) or not NAME.match(name)):
        errors.append(f"{where}: name {name!r} is not 1-64 characters of A-Z a-z 0-9 . _ - (a letter or digit first)")
    connections = entry.get("connections")
    if connections is not None and (
        isinstance(connections, bool) or not isinstance(connections, int) or connections < 1
    ):
        errors.append(f"{where}: connections must be an integer from 1 up, got {connections!r}")
    rate = entry.get("rate")
    if rate is not None and (not isinstance(rate, str) or not RATE.match(rate)):
        errors.append(f"{where}: rate {rate!r} is not like 10r/s or 600r/m")
    key = {"name": name, "key": secret, "connections": connections, "rate": rate}
    return key, errors


def _keys(api_keys, admin_keys, host):
    keys, errors = {}, []
    for field, entries, admin in (
        ("ollama_gateway_api_keys", api_keys, False),
        ("ollama_gateway_admin_keys", admin_keys, True),
    ):
        if not isinstance(entries, list):
            errors.append(f"host {host}, field {field}: a list of keys, got {type(entries).__name__}")
            continue
        for i, entry in enumerate(entries):
            key, found = _entry(entry, f"host {host}, field {field}[{i}]")
            errors += found
            if found:
                continue
            known = keys.get(key["key"])
            if known and not (admin and not known["admin"]):
                errors.append(f"host {host}, field {field}[{i}]: the key of {known['name']} again")
                continue
            keys[key["key"]] = dict(key, admin=admin)
    names = [k["name"] for k in keys.values()]
    errors += sorted({f"host {host}: key name {n!r} given to more than one key" for n in names if names.count(n) > 1})
    return list(keys.values()), errors


def _listed(admin_keys):
    """The default () as a list; anything else as given, so a string is reported as one, not split."""
    return list(admin_keys) if isinstance(admin_keys, tuple) else admin_keys


def ollama_gateway_key_errors(api_keys, admin_keys=(), host="?"):
    """What is wrong with the keys, one message per problem (no secret in them); empty when nothing is."""
    return _keys(api_keys, _listed(admin_keys), host)[1]


def ollama_gateway_keys(api_keys, admin_keys=(), host="?"):
    keys, errors = _keys(api_keys, _listed(admin_keys), host)
    if errors:
        raise AnsibleFilterError("\n".join(errors) + f"\nA key is a string or {NEW_FORM}.")
    return keys


class FilterModule:
    def filters(self):
        return {"ollama_gateway_keys": ollama_gateway_keys, "ollama_gateway_key_errors": ollama_gateway_key_errors}
