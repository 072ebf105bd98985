"""Checks shared by the scenarios' day-2 tests: status.yml's table, the gateway's metrics, what uninstall leaves."""

from __future__ import annotations

import json
import re
import shlex
import subprocess
from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families

# Everything the roles add to a host (uninstall.yml must remove all of it).
GPU_HOST_PATHS = [
    "/etc/systemd/system/ollama@.service",
    "/etc/systemd/system/ollama-firewall.service",
    "/etc/systemd/system/ollama-nvidia-devices.service",
    "/etc/systemd/system/ollama@*.service.d",  # each instance's device allow-list
    "/usr/local/sbin/ollama-nvidia-devices",
    "/etc/modules-load.d/ollama-nvidia.conf",
    "/usr/local/share/ca-certificates/ollama-fleet-registry.crt",
    "/etc/systemd/system/ollama.service",  # the mask on the stock unit
    "/etc/ollama",
    "/opt/ollama",
    "/opt/ollama-fleet",
    "/usr/local/bin/ollama",
    "/usr/share/ollama",
]
REGISTRY_PATHS = [
    "/etc/ollama-registry",
    "/etc/systemd/system/ollama-registry-firewall.service",
    "/etc/systemd/system/docker-registry.service.d/ollama-fleet.conf",
]
GATEWAY_PATHS = [
    "/etc/nginx/conf.d/ollama-gateway.conf",
    "/etc/systemd/system/nginx.service.d/ollama-gateway.conf",
    "/etc/nginx/ollama-gateway",
    "/etc/systemd/system/ollama-gateway-health.service",
    "/etc/systemd/system/ollama-gateway-requests.service",
    "/etc/systemd/system/ollama-gateway-firewall.service",
    "/usr/local/sbin/ollama-gateway-check",
    "/usr/local/sbin/ollama-gateway-drain",
    "/usr/local/sbin/ollama-gateway-health",
    "/usr/local/sbin/ollama-gateway-vip-check",
    "/etc/keepalived/keepalived.conf",
    "/run/ollama-gateway",
]
MODEL_STORE = "/var/lib/ollama/models"


def status_rows(run: subprocess.CompletedProcess) -> dict[tuple[str, str], list[str]]:
    """status.yml's table: {(host, instance): [unit, port, GPUs, version, ...]} from its output."""
    block = run.stdout.split("Show every instance", 1)[1].split("TASK [", 1)[0]
    lines = [line.strip() for line in block.splitlines()]
    header = next(n for n, line in enumerate(lines) if line.startswith("host "))
    rows = {}
    for line in lines[header + 1 :]:
        if not line or line.startswith(("all ", "problems:")):
            break
        cells = re.split(r"\s{2,}", line)
        rows[(cells[0], cells[1])] = cells[2:]
    return rows


def metrics(host, listen: str = "127.0.0.1:8081") -> dict:
    """The gateway's /metrics, parsed as Prometheus does: {family name: [samples]}."""
    text = host.check_output(f"curl -sf http://{listen}/metrics")
    return {family.name: family.samples for family in text_string_to_metric_families(text)}


def left_behind(host, paths: list[str]) -> list[str]:
    """The PATHS (shell globs allowed) that exist on HOST."""
    return [p for p in paths if host.run(f"ls -d {p}").rc == 0]


# `systemctl is-active` / `is-enabled` answers that mean the unit is still at work or still set to start.
_RUNNING = {"active", "activating", "deactivating", "reloading", "refreshing", "failed"}
_ENABLED = {"enabled", "enabled-runtime", "linked", "linked-runtime", "alias", "indirect", "static", "generated"}


def units_left(host, *patterns: str) -> list[str]:
    """What an operator would call left of the units systemd lists for PATTERNS (default ollama*): one
    that runs or failed, one that is enabled, one whose cgroup still holds a process. A unit systemd
    merely still lists (its file gone, "not-found inactive dead") is not counted: some kernels keep a
    stopped unit's cgroup marked populated (README, Uninstalling), and real hosts do when a process hangs in the GPU
    driver."""
    quoted = " ".join(shlex.quote(p) for p in patterns or ("ollama*",))
    listed = host.check_output(
        f"systemctl list-units --all --plain --no-legend --full -- {quoted} | awk '{{print $1}}'"
    )
    left = []
    for unit in listed.split():
        active = host.run(f"systemctl is-active -- {unit}").stdout.strip()
        enabled = host.run(f"systemctl is-enabled -- {unit}").stdout.strip()
        cgroup = host.check_output(f"systemctl show -P ControlGroup -- {unit}")
        procs = host.run(f"cat /sys/fs/cgroup{cgroup}/cgroup.procs").stdout.strip() if cgroup else ""
        if active in _RUNNING or enabled in _ENABLED or procs:
            left.append(f"{unit}: {active}, {enabled or 'no unit file'}, processes: {procs.split() or 'none'}")
    return left


def footprint(host) -> dict:
    """What uninstall must leave as it was: packages, other accounts, the model store, sshd."""
    return {
        "packages": host.check_output("dpkg-query -W -f='${Package} ${Version}\\n' | sort"),
        "accounts": host.check_output("cut -d: -f1 /etc/passwd | grep -vx ollama | sort"),
        "models": host.check_output(f"find {MODEL_STORE} -type f -printf '%P %s\\n' 2>/dev/null | sort || true"),
        "sshd": host.service("ssh").is_running,
    }


def dashboard_queries() -> list[str]:
    """Every PromQL query of the Grafana dashboard (playbooks/files/ollama-fleet-dashboard.json)."""
    dashboard = json.loads(
        (Path(__file__).resolve().parents[2] / "playbooks/files/ollama-fleet-dashboard.json").read_text()
    )
    return [target["expr"] for panel in dashboard["panels"] for target in panel["targets"]]
