"""nvidia-smi CSV → the gpu_facts schema, for hosts where operators capture nvidia-smi themselves."""

from ansible.errors import AnsibleFilterError

# The parser is shared with the gpu_facts module (one implementation keeps "one schema, two sources" true)
from ansible_collections.ollama.fleet.plugins.module_utils.gpu_inventory import (
    QUERY_FIELDS,
    GpuParseError,
    parse_nvidia_smi_csv,
)

DOCUMENTATION = r"""
name: ollama_gpus_from_nvidia_smi
short_description: Turn nvidia-smi CSV into the GPU list gpu_facts returns
description:
  - Parses C(nvidia-smi --query-gpu=FIELDS --format=csv,noheader,nounits). Memory becomes bytes.
  - >-
    With the output of C(nvidia-smi -L), MIG devices are added; their memory comes from the profile name
    (C(3g.40gb) → 40 GiB), which is approximate: NVML reports the exact figure.
options:
  _input:
    description: The CSV text.
    type: str
    required: true
  fields:
    description: The fields of the query, in order. Must include index, uuid, name and memory.total.
    type: list
    elements: str
    default: [index, uuid, name, memory.total, memory.free, pci.bus_id, compute_cap, mig.mode.current, driver_version]
  list_output:
    description: Output of C(nvidia-smi -L), to add MIG devices.
    type: str
    default: ""
"""

EXAMPLES = r"""
ollama_gpus: "{{ lookup('file', 'gpu1-smi.csv') | ollama.fleet.ollama_gpus_from_nvidia_smi }}"
# '0, GPU-0f08…, NVIDIA L20, 49140, 49139, 00000000:18:00.0, 8.9, [N/A], 570.133.20'
# => [{"index": 0, "uuid": "GPU-0f08…", "name": "NVIDIA L20", "memory_total": 51527024640,
#      "memory_free": 51525976064, "pci_bus_id": "00000000:18:00.0", "compute_capability": "8.9",
#      "mig_mode": null, "mig_devices": []}]
"""

RETURN = r"""
_value:
  description: The GPUs in the gpu_facts schema.
  type: list
  elements: dict
"""


def ollama_gpus_from_nvidia_smi(csv_text, fields=QUERY_FIELDS, list_output=""):
    if not isinstance(csv_text, str):
        raise AnsibleFilterError(
            f"ollama_gpus_from_nvidia_smi: input must be the CSV text, got {type(csv_text).__name__}"
        )
    try:
        return parse_nvidia_smi_csv(csv_text, fields, list_output)
    except GpuParseError as exc:
        raise AnsibleFilterError(f"ollama_gpus_from_nvidia_smi: {exc}") from None


class FilterModule:
    def filters(self):
        return {"ollama_gpus_from_nvidia_smi": ollama_gpus_from_nvidia_smi}
