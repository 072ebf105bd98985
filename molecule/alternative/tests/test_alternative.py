"""After the edit: only the changed unit restarted, the removed one is gone, the rest untouched."""

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[3] / "tests"))
from helpers.day2 import units_left  # noqa: E402


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
    # systemd may still list ollama@solo after the stop (FACTS.md): what counts is that nothing of it runs,
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
