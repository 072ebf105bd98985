# One GPU schema, two sources: used by the gpu_facts module (on the target) and by the
# ollama_gpus_from_nvidia_smi filter (on the controller). Standard library only.
"""Parse nvidia-smi output into the schema gpu_facts returns.

A GPU: {index, uuid, name, memory_total, memory_free (bytes), pci_bus_id,
compute_capability ("8.9"), mig_mode (True/False, None where unsupported),
mig_devices: [{index, uuid, name, profile, memory_total, memory_free,
gpu_instance_id, compute_instance_id}]}.
"""

from __future__ import annotations

import re

MIB = 1024 * 1024
# The fields gpu_facts asks nvidia-smi for, in this order.
QUERY_FIELDS = (
    "index",
    "uuid",
    "name",
    "memory.total",
    "memory.free",
    "pci.bus_id",
    "compute_cap",
    "mig.mode.current",
    "driver_version",
)
_MIG_LINE = re.compile(r"^\s+MIG\s+(?P<profile>\S+)\s+Device\s+(?P<slot>\d+):\s+\(UUID:\s+(?P<uuid>MIG-[^)]+)\)")
_GPU_LINE = re.compile(r"^GPU\s+(?P<index>\d+):\s+(?P<name>.+?)\s+\(UUID:\s+(?P<uuid>GPU-[^)]+)\)")
_PROFILE_MEMORY = re.compile(r"\.(\d+)gb$")


_Q_GPU = re.compile(r"^GPU\s+(?P<bus>[0-9A-Fa-f]+:[0-9A-Fa-f]+:[0-9A-Fa-f]+\.[0-9A-Fa-f]+)\s*$")
_Q_MINOR = re.compile(r"^\s+Minor Number\s+:\s+(?P<minor>\S+)")


def minor_numbers_from_query(text: str) -> dict:
    """{PCI bus id (upper case): minor number, or None where nvidia-smi -q says N/A} from `nvidia-smi -q`,
    whose "Minor Number" is the N of /dev/nvidiaN (no --query-gpu field gives it)."""
    minors, bus = {}, None
    for line in text.splitlines():
        if header := _Q_GPU.match(line):
            bus = header.group("bus").upper()
        elif bus and (minor := _Q_MINOR.match(line)):
            value = minor.group("minor")
            minors[bus] = int(value) if value.isdigit() else None
    return minors


class GpuParseError(ValueError):
    pass


def _mib(value: str, field: str, line: str) -> int:
    try:
        return int(float(value)) * MIB
    except ValueError:
        raise GpuParseError(f"nvidia-smi field {field} is {value!r}, not a number of MiB, in line: {line}") from None


def parse_nvidia_smi_csv(csv_text: str, fields=QUERY_FIELDS, list_text: str = "") -> list[dict]:
    """nvidia-smi --query-gpu=<fields> --format=csv,noheader,nounits → GPUs.

    list_text, the output of `nvidia-smi -L`, adds MIG devices: nvidia-smi reports no MIG
    memory, so it is taken from the profile name (3g.40gb → 40 GiB, approximate)."""
    fields = list(fields)
    missing = [f for f in ("index", "uuid", "name", "memory.total") if f not in fields]
    if missing:
        raise GpuParseError(f"nvidia-smi query needs the fields {', '.join(missing)}")
    gpus = []
    for line in csv_text.splitlines():
        if not line.strip():
            continue
        values = [v.strip() for v in line.split(", ")]
        if len(values) != len(fields):
            raise GpuParseError(f"expected {len(fields)} comma-separated values ({', '.join(fields)}), got: {line}")
        row = dict(zip(fields, values, strict=True))
        total = _mib(row["memory.total"], "memory.total", line)
        mig = row.get("mig.mode.current", "[N/A]")
        gpus.append(
            {
                "index": int(row["index"]),
                "uuid": row["uuid"],
                "name": row["name"],
                "memory_total": total,
                "memory_free": _mib(row["memory.free"], "memory.free", line) if "memory.free" in row else total,
                "pci_bus_id": row.get("pci.bus_id", ""),
                "compute_capability": row.get("compute_cap", ""),
                "mig_mode": None if mig.startswith("[") else mig == "Enabled",
                "mig_devices": [],
            }
        )
    if list_text:
        _add_mig_devices(gpus, list_text)
    return gpus


def _add_mig_devices(gpus: list[dict], list_text: str) -> None:
    by_index = {g["index"]: g for g in gpus}
    current = None
    for line in list_text.splitlines():
        gpu = _GPU_LINE.match(line)
        if gpu:
            current = by_index.get(int(gpu["index"]))
            continue
        mig = _MIG_LINE.match(line)
        if mig and current is not None and current["mig_mode"]:
            size = _PROFILE_MEMORY.search(mig["profile"])
            memory = int(size.group(1)) * 1024 * MIB if size else 0
            current["mig_devices"].append(
                {
                    "index": int(mig["slot"]),
                    "uuid": mig["uuid"],
                    "name": f"{current['name']} MIG {mig['profile']}",
                    "profile": mig["profile"],
                    "memory_total": memory,
                    "memory_free": memory,
                    "gpu_instance_id": None,
                    "compute_instance_id": None,
                }
            )


def cuda_version_from_smi_banner(text: str) -> str:
    """The 'CUDA Version: 12.8' of plain `nvidia-smi`, or ''."""
    found = re.search(r"CUDA Version:\s*([\d.]+)", text)
    return found.group(1) if found else ""


def cuda_version_from_int(value: int) -> str:
    """NVML's 12080 → '12.8'."""
    return f"{value // 1000}.{value % 1000 // 10}"
