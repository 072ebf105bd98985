"""ollama_common's retire_units, which orphan removal and uninstall.yml use, in every state systemd can
leave a unit in: file present and enabled, file gone but still running, file gone and failed."""

from helpers.day2 import units_left
from helpers.fleet import playbook, recap

PLANT = r"""
cd /etc/systemd/system
printf '[Service]\nExecStart=/bin/sleep 3600\n[Install]\nWantedBy=multi-user.target\n' > olt-kept.service
printf '[Service]\nExecStart=/bin/sleep 3601\n' > olt-running.service
printf '[Service]\nType=oneshot\nExecStart=/bin/false\n' > olt-failed.service
systemctl daemon-reload
systemctl enable --now olt-kept.service
systemctl start olt-running.service olt-failed.service || true
rm olt-running.service olt-failed.service
systemctl daemon-reload
"""


def listed(host):
    return host.check_output("systemctl list-units --all --plain --no-legend 'olt-*' | awk '{print $1, $2, $3}'")


def test_retire_units_stops_disables_and_forgets_every_state(host):
    host.check_output(PLANT)
    try:
        assert listed(host).splitlines() == [
            "olt-failed.service not-found failed",
            "olt-kept.service loaded active",
            "olt-running.service not-found active",
        ]
        first = playbook("molecule/alternative/retire_units.yml", {"retire": ["olt-*.service"]})
        assert first.returncode == 0, first.stdout[-3000:]
        assert recap(first)["olt-alt-gpu1"]["changed"] == 3
        assert units_left(host, "olt-*") == []
        assert not host.service("olt-kept").is_enabled
        assert host.run("pgrep -f '^/bin/sleep 360[01]$'").rc == 1
        # the failure was reset (systemd may still list the stopped units: README, Uninstalling)
        assert host.check_output("systemctl list-units --state=failed --plain --no-legend 'olt-*'") == ""

        again = playbook("molecule/alternative/retire_units.yml", {"retire": ["olt-*.service"]})
        assert again.returncode == 0, again.stdout[-3000:]
        assert recap(again)["olt-alt-gpu1"]["changed"] == 0
    finally:
        host.run("systemctl disable --now olt-kept.service; rm -f /etc/systemd/system/olt-*.service")
        host.run("systemctl daemon-reload; systemctl reset-failed 'olt-*'")
