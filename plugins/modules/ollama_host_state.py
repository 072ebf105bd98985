#!/usr/bin/python
"""Read, in one call, whether a GPU host already holds what the role would write (issue 28's no-change path)."""

from __future__ import annotations

DOCUMENTATION = r"""
module: ollama_host_state
short_description: Compare everything a role of the toolkit manages on a host with what it would write, read-only
description:
  - One read of the files, directories, links, units, packages, account and Python package the role manages,
    each compared with what the role's tasks would make of it, plus each instance's C(/api/ps) (the ollama role)
    or the gateway's C(/healthz) (the ollama_gateway role).
  - Returns the differences as messages. The role takes its full path (every task) when there is one, and
    skips it when there is none, so a run that changes nothing costs one module call instead of a hundred.
  - Never changes anything; runs in check mode as well.
options:
  files:
    description:
      - Regular files with their content's sha1 (as C(ansible.builtin.template) or C(copy) would write it), owner,
        group and mode. An entry with C(only_if) is judged only where that path exists.
    type: list
    elements: dict
    default: []
  directories:
    description: Directories with their owner, group and mode.
    type: list
    elements: dict
    default: []
  links:
    description: Symbolic links (C(path)) and the C(target) each must point at, which must exist.
    type: list
    elements: dict
    default: []
  not_files:
    description: Paths that must not be regular files (a link or nothing is fine).
    type: list
    elements: path
    default: []
  absent:
    description: Paths that must not exist.
    type: list
    elements: path
    default: []
  only:
    description:
      - Directories that hold exactly the listed C(names) among their files ending in C(suffix); any other such
        file is a difference (an instance no longer planned).
    type: list
    elements: dict
    default: []
  units:
    description:
      - systemd units with what each must be, C(enabled), C(active) and C(masked) (true or false; left out, not
        judged). C(only_if) as for files.
    type: list
    elements: dict
    default: []
  commands:
    description:
      - Checks a file's owner makes itself, each C(argv) (its first item an absolute path) and the C(drift) to report
        where it exits other than 0 (with the last line it printed) or is not there. For a file rendered from state
        of the moment, which no checksum given in advance can describe (the gateway's upstreams.conf).
    type: list
    elements: dict
    default: []
  packages:
    description: Debian packages that must be installed.
    type: list
    elements: str
    default: []
  account:
    description:
      - The service account, C(user) with primary C(group), C(shell), C(home), and membership in each of C(groups)
        that exists on the host.
    type: dict
  owned_tree:
    description: A directory whose every file and directory must belong to C(owner) and C(group).
    type: dict
  python_package:
    description: A Python distribution C(name) that must be installed at C(version) in the virtualenv C(venv).
    type: dict
  instances:
    description: Instances of the plan (C(name), C(address) and C(port)) whose C(/api/ps) to read; one that does not
      answer is a difference.
    type: list
    elements: dict
    default: []
  store:
    description: The instance (C(name), C(address), C(port)) whose C(/api/tags) lists the shared store, as the
      full path reads it; one that does not answer is a difference.
    type: dict
  health:
    description:
      - The gateway's health answer, C(url) (its C(/healthz)), read as the ollama_gateway role waits for it after a
        change, a certificate not verified (the gateway's own, on this host); anything but a 200 with every
        instance C(up) (C(up) equal to C(total), both 1 where the answer leaves them out) is a difference.
    type: dict
"""

EXAMPLES = r"""
- name: Read how this host differs from the plan
  ollama.fleet.ollama_host_state:
    files:
      - {path: /etc/ollama/instances/a.env, checksum: "{{ lookup('template', 'instance.env.j2') | hash('sha1') }}",
         owner: root, group: root, mode: "0640"}
    units:
      - {name: ollama@a.service, enabled: true, active: true}
    instances: "{{ ollama_plan }}"
  register: __ollama_state
"""

RETURN = r"""
drift:
  description: >-
    One message per difference, e.g. "file /etc/ollama/instances/a.env: content differs"; empty when
    the host holds exactly what the role would write.
  type: list
  elements: str
  returned: always
loaded:
  description:
    - >-
      Per instance (the input as C(__instance)), C(status) and C(json) of its C(/api/ps), or C(msg) when it did not
      answer: the shape of an C(ansible.builtin.uri) loop over the plan, which the proof's filters read.
  type: list
  elements: dict
  returned: always
tags:
  description: >-
    The store's C(/api/tags) answer through I(store) (C({"models": []}) without one, or no answer).
  type: dict
  returned: always
"""

import glob
import grp
import hashlib
import os
import pwd
import ssl
import stat

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.ollama.fleet.plugins.module_utils.addresses import local_url
from ansible_collections.ollama.fleet.plugins.module_utils.http_json import call


def _sha1(path):
    digest = hashlib.sha1(usedforsecurity=False)  # the checksum Ansible's copy and template compare
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _name(lookup, number):
    try:
        return lookup(number)[0]
    except KeyError:
        return str(number)


def _owner_mode(kind, path, info, want):
    found = []
    owner, group = _name(pwd.getpwuid, info.st_uid), _name(grp.getgrgid, info.st_gid)
    if want.get("owner") and owner != want["owner"]:
        found.append(f"{kind} {path}: owner {owner}, not {want['owner']}")
    if want.get("group") and group != want["group"]:
        found.append(f"{kind} {path}: group {group}, not {want['group']}")
    if want.get("mode") and stat.S_IMODE(info.st_mode) != int(str(want["mode"]), 8):
        found.append(f"{kind} {path}: mode {stat.S_IMODE(info.st_mode):04o}, not {want['mode']}")
    return found


def _applies(entry):
    return not entry.get("only_if") or os.path.exists(entry["only_if"])


def _check(kind, wanted, is_kind, checksum=False):
    """Each wanted path of KIND (a file or a directory): present as that kind, with its owner, group, mode and,
    with CHECKSUM, its content's sha1."""
    found = []
    for want in filter(_applies, wanted):
        path = want["path"]
        try:
            info = os.lstat(path)
        except FileNotFoundError:
            found.append(f"{kind} {path}: missing")
            continue
        if not is_kind(info.st_mode):
            found.append(f"{kind} {path}: not a {'regular file' if kind == 'file' else kind}")
            continue
        if checksum and _sha1(path) != want["checksum"]:
            found.append(f"{kind} {path}: content differs")
        found += _owner_mode(kind, path, info, want)
    return found


def check_files(files):
    return _check("file", files, stat.S_ISREG, checksum=True)


def check_directories(directories):
    return _check("directory", directories, stat.S_ISDIR)


def check_paths(links, not_files, absent, only):
    found = []
    for link in links:
        if not os.path.islink(link["path"]) or os.readlink(link["path"]) != link["target"]:
            found.append(f"link {link['path']}: does not point at {link['target']}")
        elif not os.path.exists(link["target"]):
            found.append(f"link {link['path']}: {link['target']} is missing")
    found += [f"file {path}: a regular file, set aside by the role" for path in not_files if os.path.isfile(path)]
    found += [f"path {path}: present, removed by the role" for path in absent if os.path.lexists(path)]
    for want in only:
        present = glob.glob(os.path.join(glob.escape(want["path"]), "*" + want["suffix"]))
        extra = sorted(os.path.basename(p)[: -len(want["suffix"])] for p in present)
        extra = [name for name in extra if name not in want["names"]]
        found += [f"file {os.path.join(want['path'], name + want['suffix'])}: not in the plan" for name in extra]
    return found


UNIT_PROPERTIES = ("Id", "ActiveState", "UnitFileState")


def _unit_states(module, names):
    """systemctl show for every unit in one call, by unit name (its Id)."""
    if not names:
        return {}
    command = ["systemctl", "show", "--property=" + ",".join(UNIT_PROPERTIES), "--", *names]
    rc, out, err = module.run_command(command)
    if rc != 0:
        module.fail_json(msg=f"systemctl show failed: {err.strip() or out.strip()}")
    blocks = [dict(line.split("=", 1) for line in block.splitlines() if "=" in line) for block in out.split("\n\n")]
    return {block["Id"]: block for block in blocks if "Id" in block}


def check_units(module, units):
    """What the full path's systemd_service tasks would change. A unit whose files changed without a daemon-reload
    is not judged: the full path reloads only after its own writes, which the file comparison finds."""
    units = [unit for unit in units if _applies(unit)]
    states = _unit_states(module, sorted({u["name"] for u in units}))
    found = []
    for want in units:
        name = want["name"]
        have = states.get(name, {})
        file_state = have.get("UnitFileState", "")
        if want.get("masked") is not None and (file_state == "masked") != want["masked"]:
            found.append(f"unit {name}: {'not ' if want['masked'] else ''}masked")
        if want.get("enabled") is not None and (file_state == "enabled") != want["enabled"]:
            found.append(f"unit {name}: {file_state or 'unknown'}, not {'enabled' if want['enabled'] else 'disabled'}")
        active = have.get("ActiveState") == "active"
        if want.get("active") is not None and active != want["active"]:
            found.append(
                f"unit {name}: {have.get('ActiveState', 'unknown')}, not {'' if want['active'] else 'in'}active"
            )
    return found


def check_packages(module, packages):
    if not packages:
        return []
    rc, out, _ = module.run_command(["dpkg-query", "-W", "-f=${Package} ${db:Status-Abbrev}\n", "--", *packages])
    # "ii", or "hi" where apt-mark holds it: installed either way, as apt's state=present sees it
    installed = {fields[0] for fields in map(str.split, out.splitlines()) if len(fields) > 1 and fields[1][1:2] == "i"}
    return [f"package {name}: not installed" for name in packages if name not in installed]


def check_account(want):
    if not want:
        return []
    try:
        user = pwd.getpwnam(want["user"])
    except KeyError:
        return [f"account {want['user']}: missing"]
    found = []
    try:
        if user.pw_gid != grp.getgrnam(want["group"]).gr_gid:
            found.append(f"account {want['user']}: primary group is not {want['group']}")
    except KeyError:
        found.append(f"group {want['group']}: missing")
    if want.get("shell") and user.pw_shell != want["shell"]:
        found.append(f"account {want['user']}: shell {user.pw_shell}, not {want['shell']}")
    if want.get("home") and user.pw_dir != want["home"]:
        found.append(f"account {want['user']}: home {user.pw_dir}, not {want['home']}")
    for name in want.get("groups", []):
        try:
            members = grp.getgrnam(name).gr_mem
        except KeyError:
            continue  # the role adds the account only to the groups the host has
        if want["user"] not in members:
            found.append(f"account {want['user']}: not in group {name}")
    return found


def check_tree(want):
    if not want or not os.path.isdir(want["path"]):
        return []  # check_directories reports a missing store
    try:
        uid, gid = pwd.getpwnam(want["owner"]).pw_uid, grp.getgrnam(want["group"]).gr_gid
    except KeyError:  # a store kept by uninstall.yml, its account removed
        return [f"path {want['path']}: its owner {want['owner']}:{want['group']} does not exist"]
    for root, dirs, files in os.walk(want["path"]):
        for name in dirs + files:
            try:
                info = os.lstat(os.path.join(root, name))
            except FileNotFoundError:
                continue  # a pull's partial blob, gone since the walk listed it
            if (info.st_uid, info.st_gid) != (uid, gid):
                return [f"path {os.path.join(root, name)}: not owned by {want['owner']}:{want['group']}"]
    return []


def check_python_package(want):
    if not want:
        return []
    dist = want["name"].replace("-", "_")
    pattern = os.path.join(glob.escape(want["venv"]), "lib", "python3*", "site-packages", f"{dist}-*.dist-info")
    versions = sorted({os.path.basename(p)[len(dist) + 1 : -len(".dist-info")] for p in glob.glob(pattern)})
    if not os.path.exists(os.path.join(want["venv"], "bin", "python")):  # its interpreter gone with a Python upgrade
        return [f"python package {want['name']}: {want['venv']}/bin/python does not run"]
    if versions != [want["version"]]:
        return [
            f"python package {want['name']} in {want['venv']}: {', '.join(versions) or 'missing'}, not {want['version']}"
        ]
    return []


def read_store(instance):
    """/api/tags of the store through INSTANCE, as store.yml reads it: ({models}, drift)."""
    if not instance:
        return {"models": []}, []
    try:
        status, answer = call(local_url(instance["address"], instance["port"]) + "/api/tags")
        if status == 200 and isinstance(answer, dict) and isinstance(answer.get("models"), list):
            return answer, []
        problem = f"answered {status}"
    except Exception as error:  # noqa: BLE001 - see read_loaded
        problem = str(error) or type(error).__name__
    return {"models": []}, [f"instance {instance.get('name')}: /api/tags did not answer ({problem})"]


def check_health(want):
    """The gateway's /healthz as services.yml waits for it: 200, and every instance up."""
    if not want:
        return []
    context = ssl.create_default_context()
    context.check_hostname, context.verify_mode = False, ssl.CERT_NONE  # its own certificate, on this host
    try:
        status, answer = call(want["url"], context=context)
    except Exception as error:  # noqa: BLE001 - see read_loaded
        return [f"gateway {want['url']}: did not answer ({error or type(error).__name__})"]
    answer = answer if isinstance(answer, dict) else {}
    up, total = answer.get("up", 1), answer.get("total", 1)
    if status != 200 or up != total:
        return [f"gateway {want['url']}: answered {status}, {up} of {total} instances up"]
    return []


def read_loaded(instances):
    loaded = []
    for instance in instances:
        result = {"__instance": instance}
        try:
            status, answer = call(local_url(instance["address"], instance["port"]) + "/api/ps")
            result.update(status=status, json=answer, **({} if status == 200 else {"msg": f"answered {status}"}))
        except Exception as error:  # noqa: BLE001 - whatever the port answers, a difference, not a traceback
            result.update(status=-1, msg=str(error) or type(error).__name__)
        loaded.append(result)
    return loaded


def check_commands(module, commands):
    drift = []
    for command in commands:
        argv = [str(arg) for arg in command["argv"]]
        if not os.path.exists(argv[0]):
            drift.append(f"{command['drift']} ({argv[0]}: missing)")
            continue
        rc, out, err = module.run_command(argv)
        said = (err or out).strip().splitlines()
        if rc != 0:
            drift.append(f"{command['drift']} ({said[-1] if said else f'exit status {rc}'})")
    return drift


def main():
    listed = {"type": "list", "elements": "dict", "default": []}
    module = AnsibleModule(
        argument_spec={
            "files": listed,
            "directories": listed,
            "links": listed,
            "not_files": {"type": "list", "elements": "path", "default": []},
            "absent": {"type": "list", "elements": "path", "default": []},
            "only": listed,
            "units": listed,
            "packages": {"type": "list", "elements": "str", "default": []},
            "account": {"type": "dict"},
            "owned_tree": {"type": "dict"},
            "python_package": {"type": "dict"},
            "instances": listed,
            "store": {"type": "dict"},
            "health": {"type": "dict"},
            "commands": listed,
        },
        supports_check_mode=True,
    )
    p = module.params
    drift = [
        *check_files(p["files"]),
        *check_directories(p["directories"]),
        *check_paths(p["links"], p["not_files"], p["absent"], p["only"]),
        *check_units(module, p["units"]),
        *check_packages(module, p["packages"]),
        *check_account(p["account"]),
        *check_tree(p["owned_tree"]),
        *check_python_package(p["python_package"]),
        *check_health(p["health"]),
        *check_commands(module, p["commands"]),
    ]
    loaded = read_loaded(p["instances"])
    drift += [f"instance {r['__instance']['name']}: /api/ps did not answer ({r['msg']})" for r in loaded if "msg" in r]
    tags, unanswered = read_store(p["store"])
    module.exit_json(changed=False, drift=drift + unanswered, loaded=loaded, tags=tags)


if __name__ == "__main__":
    main()
