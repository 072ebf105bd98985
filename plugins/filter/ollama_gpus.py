"""nvidia-smi CSV → the gpu_facts schema, for hosts where operators capture nvidia-smi themselves."""

from ansible.errors import AnsibleFilterError

# The parser is shared with the gpu_facts module (one implementation keeps "one schema, two sources" true)
from ansible_collections.ollama.fleet.plugins.module_utils.gpu_inventory import (
    QUERY_FIELDS,
    GpuParseError,
    parse_nvidia_smi_csv,
)


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
