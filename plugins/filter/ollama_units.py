"""What systemd holds in memory of some units, from `systemctl list-units --all --plain --no-legend --full`."""

from ansible.errors import AnsibleFilterError


def ollama_systemd_units(lines):
    if isinstance(lines, str) or not isinstance(lines, list):
        raise AnsibleFilterError("ollama_systemd_units: expects the stdout_lines of systemctl list-units as a list")
    units = []
    for line in lines:
        fields = str(line).split()
        if not fields:
            continue
        # a legend's header or a unit marked by systemctl's bullet is output without --plain --no-legend
        if len(fields) < 4 or fields[0] in ("UNIT", "●", "*"):
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
