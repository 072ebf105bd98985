"""Driving a molecule scenario's hosts from its verify step: site.yml runs, snapshots, commands."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import testinfra

from .waiting import wait_until

REPO = Path(__file__).resolve().parents[2]


def inventory() -> str:
    return os.environ["MOLECULE_INVENTORY_FILE"]


def host(name: str):
    return testinfra.get_host(f"ansible://{name}", ansible_inventory=inventory())


def health(gateway: str, listen: str = "127.0.0.1:8081") -> dict:
    """The gateway's view of every instance: /healthz on its status listener, which only the gateway host
    reaches (the public /healthz says up or down, nothing about the fleet). {} when it does not answer."""
    answer = host(gateway).run(f"curl -s --max-time 10 http://{listen}/healthz")
    try:
        return json.loads(answer.stdout)
    except ValueError:
        return {}


# One empty file per instance held out of the gateway's rotation, named ADDRESS:PORT@REASON (ollama-gateway-drain).
MARKS = "/run/ollama-gateway/drained"


def rotation(gateway: str) -> dict:
    """What the gateway serves from: its instances' answers (health) and the drain marks that hold some out."""
    listed = host(gateway).run(f"ls -A {MARKS}")
    return {"health": health(gateway), "marks": listed.stdout.split() if listed.rc == 0 else []}


def wait_for_full_rotation(gateway: str, timeout: float = 60) -> dict:
    """Every instance answers and none is held out: an instance restarted or killed by a test stays out of
    rotation until the health checker's next good probe (ollama_gateway_probe_interval) lifts its mark."""

    def full():
        now = rotation(gateway)
        seen.append(now)
        h = now["health"]
        return h and h.get("up") == h.get("total") and not now["marks"] and now

    seen, started = [], time.monotonic()
    try:
        return wait_until(full, timeout, f"every instance of {gateway} in rotation")
    except AssertionError as e:
        raise AssertionError(f"{e}\nmarks seen while waiting: {held(seen) or 'none'}") from None
    finally:
        # what each wait met, for the CI log's reader: which instances were still held out, and how long
        logs = REPO / ".cache" / "test-logs"
        logs.mkdir(parents=True, exist_ok=True)
        with (logs / "rotation-waits.log").open("a") as log:
            test = os.environ.get("PYTEST_CURRENT_TEST", "?").split(" ")[0]
            log.write(f"{test}: {time.monotonic() - started:.1f} s, marks seen: {held(seen) or 'none'}\n")


def held(seen: list) -> list:
    return sorted({m for s in seen for m in s["marks"]})


def playbook(path: str, *extra_vars: dict, timeout: float = 600) -> subprocess.CompletedProcess:
    """ansible-playbook PATH (relative to the repository) against the scenario's hosts, with molecule's own
    Ansible settings."""
    args = [str(Path(sys.executable).parent / "ansible-playbook"), "-i", inventory(), str(REPO / path)]
    for ev in extra_vars:
        args += ["-e", json.dumps(ev)]
    env = {
        **os.environ,
        "ANSIBLE_CONFIG": str(Path(os.environ["MOLECULE_EPHEMERAL_DIRECTORY"]) / "ansible.cfg"),
        "ANSIBLE_NOCOLOR": "1",
        "ANSIBLE_FORCE_COLOR": "0",
    }
    return subprocess.run(args, capture_output=True, text=True, env=env, cwd=REPO, timeout=timeout)


def site(*extra_vars: dict, timeout: float = 600) -> subprocess.CompletedProcess:
    """ansible-playbook site.yml against the scenario's hosts."""
    return playbook("site.yml", *extra_vars, timeout=timeout)


def process_env(h, name: str) -> dict:
    """The environment instance NAME's process runs with (/proc/PID/environ), on testinfra host H."""
    pid = h.check_output(f"systemctl show -p MainPID --value ollama@{name}.service")
    raw = h.check_output(f"tr '\\0' '\\n' < /proc/{pid}/environ")
    return dict(line.split("=", 1) for line in raw.splitlines() if "=" in line)


def recap(run: subprocess.CompletedProcess) -> dict[str, dict[str, int]]:
    """PLAY RECAP counts per host: {"host": {"ok": 5, "changed": 0, ...}}."""
    counts = {}
    for line in run.stdout.split("PLAY RECAP", 1)[-1].splitlines():
        if " : " in line:
            name, _, rest = line.partition(" : ")
            counts[name.strip()] = {k: int(v) for k, v in (f.split("=") for f in rest.split())}
    return counts


# upstreams.conf is left out: the drain tool rewrites it whenever the health checker holds an instance out (a
# slow probe under load), which is no change of site.yml's; fleet.json, which it renders from, is in.
SNAPSHOT = (
    "{ sha256sum /etc/systemd/system/ollama@.service /etc/ollama/instances/* /etc/ollama/firewall.nft "
    "/etc/nginx/conf.d/ollama-gateway.conf; find /etc/nginx/ollama-gateway -type f ! -name upstreams.conf "
    "-exec sha256sum {} +; } 2>/dev/null | sort; "
    "for u in $(systemctl list-units --all --no-legend --plain 'ollama*' nginx.service | awk '{print $1}'); do "
    "echo $u $(systemctl show -p ActiveState -p ActiveEnterTimestampMonotonic --value $u | tr '\\n' ' '); done"
)


def snapshot(names: list[str]) -> dict:
    """What a failed run must not touch: unit and config files, and which units run since when."""
    return {name: host(name).check_output(SNAPSHOT) for name in names}
