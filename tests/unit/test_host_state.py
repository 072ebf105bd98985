"""The no-change path (issue 28): ollama_host_state reads what the role manages, and reads all of it."""

import grp
import hashlib
import http.server
import importlib.util
import os
import pwd
import re
import socket
import subprocess
import threading
from pathlib import Path

import pytest
import yaml
from ollama_proof import ollama_warm_misses

REPO = Path(__file__).resolve().parents[2]
ROLE = REPO / "roles/ollama"
spec = importlib.util.spec_from_file_location("ollama_host_state", REPO / "plugins/modules/ollama_host_state.py")
state = importlib.util.module_from_spec(spec)
spec.loader.exec_module(state)

ME = pwd.getpwuid(os.getuid()).pw_name
MY_GROUP = grp.getgrgid(os.getgid()).gr_name


def tasks(role=ROLE, skipped=("uninstall",)):
    """Every task of ROLE that runs on a deploy (the files whose names start with SKIPPED aside), blocks opened."""

    def walk(items):
        for task in items or []:
            yield task
            for key in ("block", "rescue", "always"):
                yield from walk(task.get(key))

    for path in sorted((role / "tasks").glob("*.yml")):
        if not path.name.startswith(skipped):
            yield from ((path.name, task) for task in walk(yaml.safe_load(path.read_text())))


# ollama_plan_host reads the host with the options of vars/main/host_state.yml (tasks/plan.yml)
COMPARED = (ROLE / "vars/main/host_state.yml").read_text()
# Files a task writes that describe no state of the host's service, each with why it is not compared.
NOT_COMPARED = {
    "created-{{ item.kind }}": "written once, when the role creates the account; uninstall.yml reads it",
    "ollama.service.before-toolkit": "install.sh's unit kept for uninstall.yml, only when one is set aside",
    "/var/cache/{{ ollama_nvml_wheel_src | basename }}": "the installer's wheel: the venv's version is compared",
}


# Other state the full path's tasks make, each with the words host_state reads it by: a directory or link (file),
# a unit (systemd_service), a package (apt), the account's home (user).
def made_by(task):
    file = task.get("ansible.builtin.file", {})
    if file.get("state") in ("directory", "link") and not file.get("recurse"):
        yield file.get("path", file.get("dest"))
    if "name" in task.get("ansible.builtin.systemd_service", {}):
        yield task["ansible.builtin.systemd_service"]["name"]
    if "ansible.builtin.apt" in task:
        yield task["ansible.builtin.apt"]["name"]
    if "home" in task.get("ansible.builtin.user", {}):
        yield task["ansible.builtin.user"]["home"]


def test_every_directory_link_unit_package_and_home_a_task_makes_is_compared():
    made = [(name, what) for name, task in tasks() for what in made_by(task)]
    assert len(made) > 10
    for name, what in made:
        # each literal part and each variable of the expression, as the host state's vars spell them
        parts = [p.strip() for p in re.split(r"\{\{|\}\}", what) if p.strip()]
        missing = [p for p in parts if p.split(" | ")[0].removesuffix(".service") not in COMPARED]
        assert not missing, f"{name}: {what} is made there, but host_state does not read {missing}"


def test_every_file_a_task_writes_is_compared():
    templates, copies = set(), set()
    for name, task in tasks():
        if "ansible.builtin.template" in task:
            templates.add(task["ansible.builtin.template"]["src"])
        if "ansible.builtin.copy" in task:
            copies.add((name, task["ansible.builtin.copy"]["dest"]))
    assert templates, "the role writes its units and env files with templates"
    # a file of the state names its template, which ollama_plan_host renders as the template module does
    rendered = set(re.findall(r"'?template'?: '?([\w@.-]+\.j2)", COMPARED))
    assert templates == rendered, "the host state renders exactly the templates the tasks write"
    for name, dest in copies:
        if any(dest.endswith(skipped) for skipped in NOT_COMPARED):
            continue
        variable = re.fullmatch(r"\{\{ (\w+) \}\}", dest)
        assert variable and variable.group(1) in COMPARED, f"{name} writes {dest}, which the host state does not read"


GATEWAY = REPO / "roles/ollama_gateway"
# What the gateway's read-only files do not write: its checks (preflight), the status play and uninstall.
GATEWAY_DEPLOY = ("uninstall", "status", "preflight", "host_state")
GATEWAY_COMPARED = (GATEWAY / "tasks/host_state.yml").read_text() + (GATEWAY / "vars/main/host_state.yml").read_text()


def test_every_file_directory_unit_and_package_the_gateway_makes_is_compared():
    templates, made = set(), []
    for name, task in tasks(GATEWAY, GATEWAY_DEPLOY):
        if "ansible.builtin.template" in task:
            templates.add(task["ansible.builtin.template"]["src"])
        copy = task.get("ansible.builtin.copy", {})
        sources = task.get("loop", []) if copy.get("src") == "{{ item }}" else [copy.get("src") or copy.get("content")]
        made += [(name, source) for source in sources if source]
        file = task.get("ansible.builtin.file", {})
        if file.get("state") in ("directory", "absent") and file.get("path") != "{{ item }}":
            made.append((name, file["path"]))
        made += [(name, what) for what in made_by(task) if "{{ item }}" not in what]
    looked_up = set(re.findall(r"lookup\('template', '([^']+)'", GATEWAY_COMPARED))
    assert templates and templates == looked_up, "host_state.yml renders exactly the templates the tasks write"
    assert len(made) > 15
    for name, what in made:
        parts = [p.strip() for p in re.split(r"\{\{|\}\}", what) if p.strip()]
        missing = [p for p in parts if p.split(" | ")[0].removesuffix(".service") not in GATEWAY_COMPARED]
        assert not missing, f"{name}: {what} is made there, but the gateway's host_state does not read {missing}"


@pytest.fixture
def tree(tmp_path):
    (tmp_path / "instances").mkdir()
    for name in ("a", "b"):
        (tmp_path / "instances" / f"{name}.env").write_text(f"OLLAMA_HOST={name}\n")
    (tmp_path / "instances" / "a.env").chmod(0o640)
    return tmp_path


def sha1(text):
    return hashlib.sha1(text.encode(), usedforsecurity=False).hexdigest()


def want_file(path, text, mode="0640"):
    return {"path": str(path), "checksum": sha1(text), "owner": ME, "group": MY_GROUP, "mode": mode}


def test_files_match_or_name_what_differs(tree):
    a = tree / "instances/a.env"
    assert state.check_files([want_file(a, "OLLAMA_HOST=a\n")]) == []
    assert state.check_files([want_file(a, "OLLAMA_HOST=x\n")]) == [f"file {a}: content differs"]
    assert state.check_files([want_file(a, "OLLAMA_HOST=a\n", mode="0644")]) == [f"file {a}: mode 0640, not 0644"]
    gone = tree / "gone.env"
    assert state.check_files([want_file(gone, "")]) == [f"file {gone}: missing"]
    # judged only where the condition holds (the driver's modules file, without the driver)
    assert state.check_files([{**want_file(gone, ""), "only_if": str(tree / "no-driver")}]) == []
    other = [{**want_file(a, "OLLAMA_HOST=a\n"), "owner": "nobody"}]
    assert state.check_files(other) == [f"file {a}: owner {ME}, not nobody"]


def test_paths_links_and_instances_no_longer_planned(tree):
    target = tree / "bin-ollama"
    target.write_text("")
    link = tree / "ollama"
    link.symlink_to(target)
    assert state.check_paths([{"path": str(link), "target": str(target)}], [], [], []) == []
    assert state.check_paths([{"path": str(link), "target": "/elsewhere"}], [], [], []) == [
        f"link {link}: does not point at /elsewhere"
    ]
    target.unlink()
    assert state.check_paths([{"path": str(link), "target": str(target)}], [], [], []) == [
        f"link {link}: {target} is missing"
    ]
    only = [{"path": str(tree / "instances"), "suffix": ".env", "names": ["a"]}]
    assert state.check_paths([], [], [], only) == [f"file {tree}/instances/b.env: not in the plan"]
    assert state.check_paths([], [str(tree / "instances/a.env")], [str(tree / "instances")], []) == [
        f"file {tree}/instances/a.env: a regular file, set aside by the role",
        f"path {tree}/instances: present, removed by the role",
    ]


def test_directories_and_the_python_package(tree):
    assert state.check_directories([{"path": str(tree / "instances"), "mode": "0755"}]) in (
        [],
        [f"directory {tree}/instances: mode {(tree / 'instances').stat().st_mode & 0o7777:04o}, not 0755"],
    )
    assert state.check_directories([{"path": str(tree / "nope")}]) == [f"directory {tree}/nope: missing"]
    site = tree / "venv/lib/python3.11/site-packages"
    (site / "nvidia_ml_py-13.615.71.dist-info").mkdir(parents=True)
    want = {"venv": str(tree / "venv"), "name": "nvidia-ml-py", "version": "13.615.71"}
    (tree / "venv/bin").mkdir()
    (tree / "venv/bin/python").symlink_to(tree / "python3.11")  # its interpreter gone: a Python upgrade
    assert state.check_python_package(want) == [f"python package nvidia-ml-py: {tree}/venv/bin/python does not run"]
    (tree / "python3.11").write_text("")
    assert state.check_python_package(want) == []
    # rebuilt under a newer Python: the same version twice is that version
    (tree / "venv/lib/python3.12/site-packages/nvidia_ml_py-13.615.71.dist-info").mkdir(parents=True)
    assert state.check_python_package(want) == []
    assert state.check_python_package({**want, "version": "12.0"}) == [
        f"python package nvidia-ml-py in {tree}/venv: 13.615.71, not 12.0"
    ]


class FakeModule:
    def __init__(self, out):
        self.out, self.commands = out, []

    def run_command(self, command):
        self.commands.append(command)
        return 0, self.out, ""

    def fail_json(self, **kwargs):
        raise AssertionError(kwargs)


SHOW = """Id=ollama@a.service
ActiveState=active
UnitFileState=enabled

Id=ollama@b.service
ActiveState=inactive
UnitFileState=enabled

Id=ollama.service
ActiveState=inactive
UnitFileState=masked
"""


def test_units_are_read_in_one_call_and_judged():
    module = FakeModule(SHOW)
    wanted = [
        {"name": "ollama@a.service", "enabled": True, "active": True},
        {"name": "ollama@b.service", "enabled": True, "active": True},
        {"name": "ollama.service", "masked": True, "active": False},
    ]
    assert state.check_units(module, wanted) == ["unit ollama@b.service: inactive, not active"]
    assert len(module.commands) == 1
    assert sorted(module.commands[0][-3:]) == ["ollama.service", "ollama@a.service", "ollama@b.service"]
    # one unit asked twice (enabled always, active only with the driver) is read once and judged twice
    masked_wrong = [
        {"name": "ollama@a.service", "masked": True},
        {"name": "ollama.service", "enabled": True},
        {"name": "ollama.service", "active": True},
    ]
    module = FakeModule(SHOW)
    assert state.check_units(module, masked_wrong) == [
        "unit ollama@a.service: not masked",
        "unit ollama.service: masked, not enabled",
        "unit ollama.service: inactive, not active",
    ]
    assert module.commands[0].count("ollama.service") == 1


def test_a_store_whose_owner_is_gone(tree):
    want = {"path": str(tree), "owner": "no-such-user", "group": "no-such-group"}
    assert state.check_tree(want) == [f"path {tree}: its owner no-such-user:no-such-group does not exist"]
    assert state.check_tree({**want, "owner": ME, "group": MY_GROUP}) == []


def test_held_packages_are_installed():
    module = FakeModule("python3-venv hi \nnftables un \n")
    assert state.check_packages(module, ["python3-venv", "nftables", "gone"]) == [
        "package nftables: not installed",
        "package gone: not installed",
    ]


class RunModule:
    """Runs the commands, as AnsibleModule.run_command does."""

    def run_command(self, argv):
        done = subprocess.run(argv, capture_output=True, text=True, check=False)
        return done.returncode, done.stdout, done.stderr


def test_a_check_the_files_owner_makes_itself_is_a_difference_where_it_fails(tmp_path):
    failing = tmp_path / "check"
    failing.write_text("#!/bin/sh\necho 'upstreams.conf: differs' >&2\nexit 1\n")
    failing.chmod(0o755)
    commands = [
        {"argv": ["/bin/true"], "drift": "never"},
        {"argv": [failing, "check"], "drift": "upstreams: not rendered"},
        {"argv": [tmp_path / "gone", "check"], "drift": "upstreams: no tool"},
    ]
    assert state.check_commands(RunModule(), commands) == [
        "upstreams: not rendered (upstreams.conf: differs)",
        f"upstreams: no tool ({tmp_path}/gone: missing)",
    ]


def test_a_store_that_does_not_answer_is_a_difference():
    closed = {"name": "a", "address": "127.0.0.1", "port": 1}
    tags, drift = state.read_store(closed)
    assert tags == {"models": []} and len(drift) == 1 and drift[0].startswith("instance a: /api/tags did not answer")
    assert state.read_store(None) == ({"models": []}, [])


def test_the_account_and_its_groups():
    assert state.check_account({"user": ME, "group": MY_GROUP, "groups": ["no-such-group"]}) == []
    assert state.check_account({"user": "no-such-user", "group": "x"}) == ["account no-such-user: missing"]
    assert state.check_account({"user": ME, "group": MY_GROUP, "shell": "/bin/nope"}) == [
        f"account {ME}: shell {pwd.getpwnam(ME).pw_shell}, not /bin/nope"
    ]


INSTANCE = {"name": "a", "models": ["qwen3:0.6b"], "fit": [{"model": "qwen3:0.6b", "context": 4096}]}


def test_warm_misses_name_each_model_the_warm_up_would_load():
    loaded = {"name": "qwen3:0.6b", "context_length": 4096, "expires_at": "2318-01-01T00:00:00Z"}
    assert ollama_warm_misses([{"__instance": INSTANCE, "status": 200, "json": {"models": [loaded]}}]) == []
    other_context = {**loaded, "context_length": 2048}
    assert ollama_warm_misses([{"__instance": INSTANCE, "status": 200, "json": {"models": [other_context]}}]) == [
        "instance a: qwen3:0.6b is not loaded as pinned"
    ]
    assert ollama_warm_misses([{"__instance": INSTANCE, "status": -1, "msg": "refused"}]) == [
        "instance a: qwen3:0.6b is not loaded as pinned"
    ]


@pytest.mark.parametrize(
    ("status", "body", "differs"),
    [
        (200, b'{"status": "up", "up": 3, "total": 3}', False),
        (200, b"ok", False),  # the public answer, no counts: up
        (200, b'{"up": 2, "total": 3}', True),
        (503, b'{"up": 0, "total": 3}', True),
    ],
)
def test_the_gateway_counts_only_when_every_instance_is_up(status, body, differs):
    class Health(http.server.BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802 - http.server's name
            self.send_response(status)
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    with http.server.ThreadingHTTPServer(("127.0.0.1", 0), Health) as server:
        threading.Thread(target=server.serve_forever, daemon=True).start()
        found = state.check_health({"url": f"http://127.0.0.1:{server.server_port}/healthz"})
        server.shutdown()
    assert bool(found) == differs, found
    if differs:
        assert found[0].startswith(f"gateway http://127.0.0.1:{server.server_port}/healthz: answered {status}")


def test_a_gateway_that_does_not_answer_is_a_difference():
    with socket.socket() as bound:  # bound and not listening: refused, and no other test can take the port meanwhile
        bound.bind(("127.0.0.1", 0))
        port = bound.getsockname()[1]
        assert "did not answer" in state.check_health({"url": f"http://127.0.0.1:{port}/healthz"})[0]


def test_an_instance_whose_ps_fails_is_not_loaded_as_pinned():
    class Failing(http.server.BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802 - http.server's name
            self.send_response(500)
            self.end_headers()
            self.wfile.write(b"boom")

        def log_message(self, *args):
            pass

    with http.server.ThreadingHTTPServer(("127.0.0.1", 0), Failing) as server:
        threading.Thread(target=server.serve_forever, daemon=True).start()
        (loaded,) = state.read_loaded([{**INSTANCE, "address": "127.0.0.1", "port": server.server_port}])
        server.shutdown()
    assert (loaded["status"], loaded["json"], loaded["msg"]) == (500, None, "answered 500")
    assert ollama_warm_misses([loaded]) == ["instance a: qwen3:0.6b is not loaded as pinned"]
