"""What systemd holds in memory of some units, from `systemctl list-units --all --plain --no-legend --full`."""

from ansible.errors import AnsibleFilterError

DOCUMENTATION = r"""
name: ollama_systemd_units
short_description: Parse C(systemctl list-units --all --plain --no-legend --full) into one dict per unit
description:
  - Systemd lists a unit while it holds it in memory, which is not the same as the unit being there for an
    operator. A unit whose file is gone stays listed as C(not-found) while it runs, while it is failed, while
    another unit refers to it, or while the kernel keeps its cgroup marked populated (a process stuck in the GPU
    driver; some kernels after any stop). The load state tells the roles how to retire such a unit -
    C(ansible.builtin.systemd_service) refuses units without a file.
options:
  _input:
    description: The command's stdout lines (UNIT LOAD ACTIVE SUB DESCRIPTION, blank-separated).
    type: list
    elements: str
    required: true
"""

EXAMPLES = r"""
units: "{{ __listed.stdout_lines | ollama.fleet.ollama_systemd_units }}"
# ["ollama@solo.service  not-found inactive dead  ollama@solo.service"]
# => [{"unit": "ollama@solo.service", "load": "not-found", "active": "inactive", "sub": "dead"}]
"""

RETURN = r"""
_value:
  description: One dict per listed unit with keys unit, load (loaded, not-found, masked, ...), active (active,
    inactive, failed, activating, deactivating, ...) and sub.
  type: list
  elements: dict
"""


def ollama_systemd_units(lines):
    if isinstance(lines, str) or not isinstance(lines, list):
        raise AnsibleFilterError("ollama_systemd_units: expects the stdout_lines of systemctl list-units as a list")
    units = []
    for line in lines:
        fields = str(line).split()
        if not fields:
            continue
        if len(fields) < 4:
            raise AnsibleFilterError(
                f"ollama_systemd_units: {line!r} is not a systemctl list-units row (UNIT LOAD ACTIVE SUB ...); "
                "run it with --plain --no-legend --full"
            )
        unit, load, active, sub = fields[:4]
        units.append({"unit": unit, "load": load, "active": active, "sub": sub})
    return units


class FilterModule:
    def filters(self):
        return {"ollama_systemd_units": ollama_systemd_units}
