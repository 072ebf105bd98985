"""The model store of a GPU host: where pinned models come from, which digest they must have, which go."""

import re

from ansible.errors import AnsibleFilterError
from ansible_collections.ollama.fleet.plugins.module_utils.model_names import DEFAULT_HOST, key, parse
from ansible_collections.ollama.fleet.plugins.module_utils.report import text_table

DIGEST = re.compile(r"^(sha256:)?([0-9a-f]{12,64})$")


def ollama_registry_name(model, registry):
    name = parse(model)
    if not registry or name.host.lower() != DEFAULT_HOST:  # a host of its own says where it comes from
        return name.display
    # a registry's repositories are lower case (the distribution spec), and ollama_registry_load pushes them so
    return f"{registry}/{name.namespace}/{name.model}:{name.tag}".lower()


def digest_hex(value, where):
    """A pinned digest as hex: sha256:<hex> or <hex>, 12 hex digits (what `ollama list` shows) up to 64."""
    match = DIGEST.match(str(value).strip().lower())
    if not match:
        raise AnsibleFilterError(
            f"{where}: digest {value!r} is not sha256:<hex> with 12 to 64 hex digits "
            "(the ID `ollama list` shows, or the digest in /api/tags)"
        )
    return match.group(2)


def ollama_digest_mismatches(tags, models, digests, host="this host"):
    """Pinned models whose store holds another digest: [{model, want, have}].

    tags is /api/tags of the host's store; models the names the plan pins; digests ollama_model_digests."""
    pins = {key(k): digest_hex(v, f"host {host}, field ollama_model_digests, model {k}") for k, v in digests.items()}
    have = {key(m["name"]): m.get("digest", "") for m in tags.get("models", [])}
    return [
        {"model": model, "want": pins[key(model)], "have": have[key(model)]}
        for model in sorted(models)
        if key(model) in pins and key(model) in have and not have[key(model)].startswith(pins[key(model)])
    ]


def ollama_models_to_remove(stored, pinned, recorded, absent, prune):
    """Models to delete from a host's store: those this toolkit pinned before (recorded) or the operator marks
    absent, and with prune every model, but never one an instance of the host pins now. Names as the store has them."""
    keep = {key(m) for m in pinned}
    wanted = {key(m) for m in [*recorded, *absent, *(stored if prune else [])]}
    return sorted(m for m in stored if key(m) in wanted - keep)


def ollama_digest_message(mismatch):
    return (
        f"{mismatch['model']} is sha256:{mismatch['have'][:12]} in the store, "
        f"ollama_model_digests pins sha256:{mismatch['want'][:12]}"
    )


def ollama_registry_gaps(pinned, registry, hostvars, registry_hosts):
    """The inventory's registry host that C(registry) (HOST[:PORT]) names, and the models pinned here that it is
    not loaded with: {host, missing}. host is empty when the registry is none of the inventory's (then nothing
    can be checked). Models whose name carries a registry of its own do not come from it."""
    address = registry.rsplit(":", 1)[0] if registry else ""
    for name in registry_hosts if address else []:
        if address in (name, hostvars[name].get("ansible_host", name)):
            loaded = {key(m) for m in hostvars[name].get("ollama_registry_models", [])}
            wanted = [parse(m) for m in pinned if parse(m).host.lower() == DEFAULT_HOST]
            return {"host": name, "missing": sorted(m.display for m in wanted if m.key not in loaded)}
    return {"host": "", "missing": []}


def human_bytes(count):
    for unit in ("B", "KiB", "MiB", "GiB"):
        if count < 1024 or unit == "GiB":
            return f"{count:.1f} {unit}" if unit != "B" else f"{count} B"
        count /= 1024
    return f"{count} B"


def ollama_pull_progress(progress):
    """One line of a running pull for the play's output: percent of the bytes, rate, time so far."""
    name = progress.get("model", "?")
    if progress.get("error"):
        return f"{name}: failed after {progress.get('elapsed', 0):.0f} s: {progress['error']}"
    total, completed = progress.get("total", 0), progress.get("completed", 0)
    if not total:
        return f"{name}: {progress.get('status', 'starting')} ({progress.get('elapsed', 0):.0f} s)"
    percent = 100 * completed / total
    state = "done" if progress.get("done") else progress.get("status", "pulling")
    return (
        f"{name}: {percent:.0f}% of {human_bytes(total)} at {human_bytes(progress.get('rate', 0))}/s, "
        f"{progress.get('elapsed', 0):.0f} s ({state})"
    )


def ollama_store_digests(gpu_hosts):
    """Per pinned model, which digest each host's store holds: [{model, digest, hosts, pinned, problem}].

    gpu_hosts are hostvars with ollama_status_report (roles/ollama/tasks/status.yml): name, store (/api/tags), pinned,
    digests; a host without it (unreachable) holds nothing here. A problem is a digest other than the pinned one, or,
    without a pin, hosts that disagree."""
    found = {}
    pins = {}
    for host in gpu_hosts:
        status = host.get("ollama_status_report")
        if status is None:
            continue  # unreachable: ollama_status gives it its row and problem
        where = f"host {host['inventory_hostname']}, field ollama_model_digests"
        pins.update({key(k): digest_hex(v, where) for k, v in status.get("digests", {}).items()})
        stored = {key(m["name"]): m.get("digest", "") for m in status["store"].get("models", [])}
        for model in status["pinned"]:
            found.setdefault(key(model), {"name": model, "digests": {}})["digests"].setdefault(
                stored.get(key(model), "(missing)"), []
            ).append(host["inventory_hostname"])
    rows = []
    for model_key, seen in sorted(found.items()):
        model, digests, pin = seen["name"], seen["digests"], pins.get(model_key)
        for digest, hosts in sorted(digests.items(), key=lambda kv: (-len(kv[1]), kv[0])):
            if pin:
                problem = "" if digest.startswith(pin) else f"pinned {pin[:12]}"
            else:
                problem = "hosts disagree" if len(digests) > 1 else ""
            rows.append(
                {
                    "model": model,
                    "digest": digest[:12],
                    "hosts": sorted(hosts),
                    "pinned": (pin or "")[:12],
                    "problem": problem,
                }
            )
    return rows


def ollama_store_digest_problem(row):
    return f"{row['model']} is {row['digest']} on {', '.join(row['hosts'])}: {row['problem']}"


def ollama_store_digest_table(rows):
    """The rows as aligned text lines for the play's output."""
    lines = [("model", "digest", "hosts", "problem")] + [
        (r["model"], r["digest"], ", ".join(r["hosts"]), r["problem"] or "ok") for r in rows
    ]
    return text_table(lines)


class FilterModule:
    def filters(self):
        return {
            "ollama_registry_name": ollama_registry_name,
            "ollama_digest_mismatches": ollama_digest_mismatches,
            "ollama_digest_message": ollama_digest_message,
            "ollama_models_to_remove": ollama_models_to_remove,
            "ollama_registry_gaps": ollama_registry_gaps,
            "ollama_pull_progress": ollama_pull_progress,
            "ollama_store_digests": ollama_store_digests,
            "ollama_store_digest_table": ollama_store_digest_table,
            "ollama_store_digest_problem": ollama_store_digest_problem,
        }
