"""After the edit: only the changed unit restarted, the removed one is gone, the rest untouched."""

import json

import pytest
from helpers.day2 import status_rows, units_left
from helpers.fleet import playbook, wait_for_full_rotation


@pytest.fixture(scope="module")
def started_before(host):
    rows = host.check_output("cat /run/olt-before.txt").splitlines()
    return {name: int(stamp) for name, stamp in (row.split() for row in rows)}


def started_now(host, name):
    return int(host.check_output(f"systemctl show -p ActiveEnterTimestampMonotonic --value ollama@{name}.service"))


def test_only_the_changed_instance_restarted(host, started_before):
    assert started_now(host, "small") > started_before["small"]
    assert started_now(host, "large") == started_before["large"]


def test_the_changed_setting_is_live(host):
    pid = host.check_output("systemctl show -p MainPID --value ollama@small.service")
    assert "OLLAMA_NUM_PARALLEL=2" in host.check_output(f"tr '\\0' '\\n' < /proc/{pid}/environ").splitlines()
    assert host.run("curl -sf http://127.0.0.1:11435/api/version").rc == 0


def test_the_removed_instance_and_its_files_are_gone(host):
    # systemd may still list ollama@solo after the stop (README, Uninstalling): what counts is that nothing of it runs,
    # starts at boot or answers, and that its file is gone
    assert units_left(host, "ollama@solo.service") == []
    solo = host.service("ollama@solo")
    assert not solo.is_running and not solo.is_enabled
    assert not host.file("/etc/ollama/instances/solo.env").exists
    assert host.check_output("ls /etc/ollama/instances").split() == ["large.env", "small.env"]
    assert host.run("curl -sf http://127.0.0.1:11437/api/version").rc != 0
    assert host.check_output("ss -Htln '( sport = :11437 )'") == ""
    assert host.check_output(
        "systemctl list-units --plain --no-legend --state=active 'ollama@*' | awk '{print $1}'"
    ).split() == [
        "ollama@large.service",
        "ollama@small.service",
    ]


def test_the_gateway_holds_no_instance_out():
    """The restart's drain and the removal's are gone: a mark left behind holds an instance out for good, and
    status.yml counts a restart mark as no problem."""
    wait_for_full_rotation("olt-alt-gpu1")


# The instances after side_effect.yml; status.yml needs them as extra vars like site.yml got them.
EDITED = {
    "ollama_instances": [
        {"name": "small", "gpus": [0, 1], "num_parallel": 2, "models": ["llama3.1:8b"]},
        {
            "name": "large",
            "gpus": [2, 3, 4, 5, 6],
            "context_length": 131072,
            "num_parallel": 6,
            "models": ["llama3.1:70b"],
        },
    ]
}


def test_adjusted_parallel_is_the_same_in_env_gateway_and_status(host):
    """llama3.1:70b is not in the role's catalogue: the plan learns its size from Ollama after the pull, and
    ollama_fit_policy adjust lowers `large` from 6 to the 4 slots that fit 5 × 48 GiB at 131072. The env file,
    both nginx upstreams that hold `large`, status.yml and what Ollama loaded agree; the side effect's rerun
    left `large` running since converge (see test_only_the_changed_instance_restarted)."""
    env = host.file("/etc/ollama/instances/large.env").content_string
    assert 'OLLAMA_NUM_PARALLEL="4"\n' in env and 'OLLAMA_CONTEXT_LENGTH="131072"\n' in env
    conf = host.file("/etc/nginx/ollama-gateway/upstreams.conf").content_string
    servers = [line for line in conf.splitlines() if line.rstrip().endswith("# olt-alt-gpu1/large GPUs 2-6")]
    assert len(servers) == 2 and all(" max_conns=4 " in line for line in servers), servers
    run = playbook("playbooks/status.yml", EDITED)
    assert run.returncode == 0, run.stdout[-3000:]
    assert status_rows(run)[("olt-alt-gpu1", "large")][4] == "4"
    # converge pulled LLAMA3.1:70B into a store that held llama3.1:8b: as Ollama's does (getExistingName), the
    # store spells each part as it already had it, else as pulled, and /api/ps names the model so
    (loaded,) = json.loads(host.check_output("curl -sf http://127.0.0.1:11436/api/ps"))["models"]
    assert (loaded["name"], loaded["context_length"], loaded["size_vram"]) == ("llama3.1:70B", 131072, loaded["size"])
