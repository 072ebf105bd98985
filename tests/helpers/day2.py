"""Checks shared by the scenarios' day-2 tests: status.yml's table, the gateway's metrics, what uninstall leaves."""

from __future__ import annotations

import re
import subprocess

from prometheus_client.parser import text_string_to_metric_families

# Everything the roles add to a host (uninstall.yml must remove all of it).
GPU_HOST_PATHS = [
    "/etc/systemd/system/ollama@.service",
    "/etc/systemd/system/ollama-firewall.service",
    "/etc/systemd/system/ollama.service",  # the mask on the stock unit
    "/etc/ollama",
    "/opt/ollama",
    "/opt/ollama-fleet",
    "/usr/local/bin/ollama",
    "/usr/share/ollama",
]
GATEWAY_PATHS = [
    "/etc/nginx/conf.d/ollama-gateway.conf",
    "/etc/nginx/ollama-gateway",
    "/etc/systemd/system/ollama-gateway-health.service",
    "/usr/local/sbin/ollama-gateway-check",
    "/usr/local/sbin/ollama-gateway-drain",
    "/usr/local/sbin/ollama-gateway-health",
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
    return [p for p in paths if host.file(p).exists]


def footprint(host) -> dict:
    """What uninstall must leave as it was: packages, other accounts, the model store, sshd."""
    return {
        "packages": host.check_output("dpkg-query -W -f='${Package} ${Version}\\n' | sort"),
        "accounts": host.check_output("cut -d: -f1 /etc/passwd | grep -vx ollama | sort"),
        "models": host.check_output(f"find {MODEL_STORE} -type f -printf '%P %s\\n' 2>/dev/null | sort || true"),
        "sshd": host.service("ssh").is_running,
    }
