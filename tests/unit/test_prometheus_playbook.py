"""playbooks/prometheus.yml: a scrape configuration with every gateway's /metrics and every GPU host's exporter."""

import os
import subprocess
import sys
from pathlib import Path

import yaml
from conftest import REPO

INVENTORY = """
all:
  children:
    ollama_gpu_hosts:
      hosts:
        gpu1: {ansible_host: 10.0.0.11}
        gpu2: {ansible_host: 10.0.0.12}
    ollama_gateway:
      hosts:
        gw1: {ansible_host: 10.0.0.5, ollama_gateway_status_listen: "0.0.0.0:8081"}
        gw2: {ansible_host: 10.0.0.6}
      vars:
        ollama_gateway_vip: 10.0.0.30/24
"""


def test_scrape_configuration_lists_every_gateway_and_gpu_host(tmp_path):
    (tmp_path / "hosts.yml").write_text(INVENTORY)
    out = tmp_path / "scrape.yml"
    run = subprocess.run(
        [
            str(Path(sys.executable).parent / "ansible-playbook"),
            "-i",
            str(tmp_path / "hosts.yml"),
            str(REPO / "playbooks/prometheus.yml"),
            "-e",
            f"prometheus_scrape_file={out}",
        ],
        capture_output=True,
        text=True,
        cwd=REPO,
        env={**os.environ, "ANSIBLE_CONFIG": str(REPO / "ansible.cfg"), "ANSIBLE_NOCOLOR": "1"},
        timeout=120,
    )
    assert run.returncode == 0, run.stdout[-2000:]
    jobs = {job["job_name"]: job["static_configs"] for job in yaml.safe_load(out.read_text())["scrape_configs"]}
    assert [(c["targets"], c["labels"]) for c in jobs["ollama-gateway"]] == [
        (["10.0.0.5:8081"], {"gateway": "gw1"}),
        (["10.0.0.6:8081"], {"gateway": "gw2"}),
    ]
    # the shared address, scraped as its own job: whichever gateway holds it answers
    assert [(c["targets"], c["labels"]) for c in jobs["ollama-gateway-vip"]] == [
        (["10.0.0.30:8081"], {"vip": "10.0.0.30"})
    ]
    assert [(c["targets"], c["labels"]) for c in jobs["gpu"]] == [
        (["10.0.0.11:9400"], {"host": "gpu1"}),
        (["10.0.0.12:9400"], {"host": "gpu2"}),
    ]
    # gw2 keeps the default loopback listener: the file says what to change
    text = out.read_text()
    assert "# gw2: its status listener is 127.0.0.1:8081, loopback only" in text
    assert "# gw1:" not in text
    # the alert rules beside it, and Prometheus accepts both as they are
    assert (tmp_path / "ollama-fleet-alerts.yml").read_text() == (
        REPO / "playbooks/files/ollama-fleet-alerts.yml"
    ).read_text()
    config = tmp_path / "prometheus.yml"
    config.write_text(yaml.safe_dump({"rule_files": ["ollama-fleet-alerts.yml"], **yaml.safe_load(text)}))
    check = subprocess.run(["promtool", "check", "config", str(config)], capture_output=True, text=True, timeout=60)
    assert check.returncode == 0, check.stdout + check.stderr
