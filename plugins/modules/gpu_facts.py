#!/usr/bin/python
# Apache-2.0 (see the project's README)

DOCUMENTATION = r"""
---
module: gpu_facts
short_description: Discover a host's NVIDIA GPUs through NVML, or nvidia-smi as fallback
description:
  - Reads every GPU through NVML (nvidia-ml-py) when it is importable by the interpreter running the module,
    else through C(nvidia-smi --query-gpu=... --format=csv,noheader,nounits). Both give the same schema.
  - A host without GPU or driver is not an error; it returns no GPUs and says why in O(reason).
  - The same run reads what else the plan needs from the host, the machine's architecture and the source address of
    its route towards each of O(routes_to), so that planning costs one module run per host instead of three (fact
    gathering, discovery, one C(ip route get) per gateway).
  - Changes nothing; supports check mode.
options:
  source:
    description: Which source to ask. C(auto) tries NVML, then nvidia-smi; C(none) reads no GPU (the inventory pins them).
    type: str
    choices: [auto, nvml, nvidia-smi, none]
    default: auto
  routes_to:
    description:
      - Destinations to look up with C(ip -json route get ADDRESS), each a dict with at least C(address); it is echoed
        back as C(item) of its result.
    type: list
    elements: dict
    default: []
  nvidia_smi:
    description: Path or name of nvidia-smi.
    type: str
    default: nvidia-smi
attributes:
  check_mode:
    support: full
author: ollama-fleet developers
"""

EXAMPLES = r"""
- name: Discover GPUs with the venv that holds nvidia-ml-py
  gpu_facts:
  vars:
    ansible_python_interpreter: /opt/ollama-fleet/nvml/bin/python
  register: gpus
"""

RETURN = r"""
gpus:
  description: The GPUs, by index. Memory in bytes.
  returned: always
  type: list
  elements: dict
  sample:
    - index: 0
      uuid: GPU-0f08811b-d814-586e-aaf1-d9315f58d54d
      name: NVIDIA L20
      memory_total: 51527024640
      memory_free: 51525976064
      pci_bus_id: "00000000:18:00.0"
      minor_number: 0
      compute_capability: "8.9"
      mig_mode: null
      mig_devices: []
driver_version:
  description: NVIDIA driver version, empty without a driver.
  returned: always
  type: str
cuda_version:
  description: Highest CUDA version the driver supports ("12.8").
  returned: always
  type: str
source:
  description: Which source answered, C(nvml), C(nvidia-smi), or C(none).
  returned: always
  type: str
reason:
  description: Why no GPU was found, with NVML's and nvidia-smi's own messages; empty when GPUs were found.
  returned: always
  type: str
architecture:
  description: The machine's architecture as C(uname -m) names it (C(x86_64), C(aarch64)).
  returned: always
  type: str
routes:
  description:
    - One result per O(routes_to) entry, shaped as a C(command) loop's (C(item), C(rc), C(stdout), C(stderr)); C(rc)
      127 where C(ip) is missing.
  returned: always
  type: list
  elements: dict
"""

import platform

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.ollama.fleet.plugins.module_utils.gpu_inventory import (
    QUERY_FIELDS,
    GpuParseError,
    cuda_version_from_int,
    cuda_version_from_smi_banner,
    minor_numbers_from_query,
    parse_nvidia_smi_csv,
)


class Unavailable(Exception):
    """This source cannot answer on this host (no library, no driver, no binary)."""


def _text(value):
    return value.decode() if isinstance(value, bytes) else value


def _memory(nvml, handle):
    info = nvml.nvmlDeviceGetMemoryInfo(handle)
    return info.total, info.free


def _mig_devices(nvml, handle, name):
    devices = []
    for slot in range(nvml.nvmlDeviceGetMaxMigDeviceCount(handle)):
        try:
            mig = nvml.nvmlDeviceGetMigDeviceHandleByIndex(handle, slot)
        except nvml.NVMLError_NotFound:
            continue
        total, free = _memory(nvml, mig)
        mig_name = _text(nvml.nvmlDeviceGetName(mig))
        devices.append(
            {
                "index": slot,
                "uuid": _text(nvml.nvmlDeviceGetUUID(mig)),
                "name": mig_name,
                "profile": mig_name.rsplit(" ", 1)[-1],
                "memory_total": total,
                "memory_free": free,
                "gpu_instance_id": nvml.nvmlDeviceGetGpuInstanceId(mig),
                "compute_instance_id": nvml.nvmlDeviceGetComputeInstanceId(mig),
            }
        )
    return devices


def from_nvml():
    try:
        import pynvml as nvml
    except ImportError:
        raise Unavailable("NVML: nvidia-ml-py is not importable by this interpreter") from None
    try:
        nvml.nvmlInit()
    except nvml.NVMLError as exc:
        raise Unavailable(f"NVML: {exc}") from None
    try:
        gpus = []
        for index in range(nvml.nvmlDeviceGetCount()):
            handle = nvml.nvmlDeviceGetHandleByIndex(index)
            total, free = _memory(nvml, handle)
            major, minor = nvml.nvmlDeviceGetCudaComputeCapability(handle)
            try:
                mig_mode = bool(nvml.nvmlDeviceGetMigMode(handle)[0])
            except nvml.NVMLError_NotSupported:
                mig_mode = None
            name = _text(nvml.nvmlDeviceGetName(handle))
            try:  # the N of /dev/nvidiaN, which the instance's unit may open
                minor_number = nvml.nvmlDeviceGetMinorNumber(handle)
            except nvml.NVMLError_NotSupported:
                minor_number = None
            gpus.append(
                {
                    "index": index,
                    "uuid": _text(nvml.nvmlDeviceGetUUID(handle)),
                    "name": name,
                    "memory_total": total,
                    "memory_free": free,
                    "pci_bus_id": _text(nvml.nvmlDeviceGetPciInfo(handle).busId),
                    "minor_number": minor_number,
                    "compute_capability": f"{major}.{minor}",
                    "mig_mode": mig_mode,
                    "mig_devices": _mig_devices(nvml, handle, name) if mig_mode else [],
                }
            )
        driver = _text(nvml.nvmlSystemGetDriverVersion())
        cuda = cuda_version_from_int(nvml.nvmlSystemGetCudaDriverVersion())
        return gpus, driver, cuda
    except nvml.NVMLError as exc:
        # a real failure mid-way (GPU lost, ...): say so with NVML's own words
        raise RuntimeError(f"NVML: {exc}") from None
    finally:
        nvml.nvmlShutdown()


def from_nvidia_smi(module):
    binary = module.get_bin_path(module.params["nvidia_smi"])
    if binary is None:
        raise Unavailable(f"nvidia-smi: {module.params['nvidia_smi']} not found")
    query = [binary, f"--query-gpu={','.join(QUERY_FIELDS)}", "--format=csv,noheader,nounits"]
    rc, out, err = module.run_command(query)
    if rc != 0:
        raise Unavailable(f"nvidia-smi: {(out or err).strip()} (exit {rc})")
    rc, listing, _ = module.run_command([binary, "-L"])
    try:
        gpus = parse_nvidia_smi_csv(out, QUERY_FIELDS, listing if rc == 0 else "")
    except GpuParseError as exc:
        raise RuntimeError(f"nvidia-smi: {exc}") from None
    rc, details, _ = module.run_command([binary, "-q"])
    minors = minor_numbers_from_query(details) if rc == 0 else {}
    for gpu in gpus:
        gpu["minor_number"] = minors.get(gpu.get("pci_bus_id", "").upper())
    first = out.strip().splitlines()[0] if out.strip() else ""
    driver = dict(zip(QUERY_FIELDS, first.split(", "), strict=False)).get("driver_version", "")
    _, banner, _ = module.run_command([binary])
    return gpus, driver, cuda_version_from_smi_banner(banner)


def routes(module):
    """`ip -json route get` towards each destination, as a command loop would register it."""
    binary = module.get_bin_path("ip")
    results = []
    for item in module.params["routes_to"]:
        if binary is None:
            rc, out, err = 127, "", "ip: not found (iproute2)"
        else:
            rc, out, err = module.run_command([binary, "-json", "route", "get", str(item["address"])])
        results.append({"item": item, "rc": rc, "stdout": out, "stderr": err})
    return results


def main():
    module = AnsibleModule(
        argument_spec={
            "source": {"type": "str", "default": "auto", "choices": ["auto", "nvml", "nvidia-smi", "none"]},
            "nvidia_smi": {"type": "str", "default": "nvidia-smi"},
            "routes_to": {"type": "list", "elements": "dict", "default": []},
        },
        supports_check_mode=True,
    )
    host = {"changed": False, "architecture": platform.machine(), "routes": routes(module)}
    wanted = module.params["source"]
    sources = {"nvml": from_nvml, "nvidia-smi": lambda: from_nvidia_smi(module)}
    reasons = [] if wanted != "none" else ["none: the inventory pins the GPUs"]
    for name in {"auto": ("nvml", "nvidia-smi"), "none": ()}.get(wanted, (wanted,)):
        try:
            gpus, driver, cuda = sources[name]()
        except Unavailable as exc:
            reasons.append(str(exc))
            continue
        except RuntimeError as exc:
            module.fail_json(msg=str(exc), source=name)
        reason = "" if gpus else f"{name}: the driver answered but reports no GPU"
        module.exit_json(gpus=gpus, driver_version=driver, cuda_version=cuda, source=name, reason=reason, **host)
    module.exit_json(gpus=[], driver_version="", cuda_version="", source="none", reason="; ".join(reasons), **host)


if __name__ == "__main__":
    main()
