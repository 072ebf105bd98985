"""ollama_systemd_units: systemctl list-units rows → the load and active states the roles retire units by."""

import pytest
from ansible.errors import AnsibleFilterError
from ollama_units import ollama_systemd_units

# `systemctl list-units --all --plain --no-legend --full 'ollama*'` in a test host after uninstall.yml,
# on a kernel that keeps a stopped unit's cgroup marked populated (README, Uninstalling), plus one running instance.
LISTED = """\
ollama-gateway-health.service not-found inactive dead   ollama-gateway-health.service
ollama@large.service          loaded    active   running Ollama instance large
ollama@small.service          not-found failed   failed  ollama@small.service
""".splitlines()


def test_each_row_gives_unit_load_active_and_sub():
    assert ollama_systemd_units(LISTED) == [
        {"unit": "ollama-gateway-health.service", "load": "not-found", "active": "inactive", "sub": "dead"},
        {"unit": "ollama@large.service", "load": "loaded", "active": "active", "sub": "running"},
        {"unit": "ollama@small.service", "load": "not-found", "active": "failed", "sub": "failed"},
    ]


def test_nothing_listed_is_no_unit():
    assert ollama_systemd_units([]) == []
    assert ollama_systemd_units([""]) == []


@pytest.mark.parametrize(
    ("lines", "message"),
    [
        ("ollama@a.service loaded active running", "as a list"),
        (["UNIT LOAD"], "is not a systemctl list-units row"),
        (["UNIT LOAD ACTIVE SUB DESCRIPTION"], "is not a systemctl list-units row"),
        (["● ollama@a.service not-found inactive dead ollama@a.service"], "run it with --plain --no-legend"),
    ],
)
def test_other_input_is_refused_with_what_to_run(lines, message):
    with pytest.raises(AnsibleFilterError, match=message):
        ollama_systemd_units(lines)
