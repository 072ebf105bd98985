"""What a real NVIDIA driver printed (an H100, driver 580.159.04, recorded by tests/device/), held against the code.

CI has no GPU; these fixtures are the part of the real world the simulated driver stands in for.
Re-record on a GPU machine with tests/device/boot_probe_host.sh (README: "Checked on a real GPU").
"""

import importlib.util
import json
import sys

from conftest import FIXTURES, REPO

sys.path.insert(0, str(REPO / "roles" / "ollama" / "module_utils"))
from gpu_inventory import (  # noqa: E402
    QUERY_FIELDS,
    cuda_version_from_smi_banner,
    minor_numbers_from_query,
    parse_nvidia_smi_csv,
)

REAL = FIXTURES / "real-driver" / "h100-580.159.04"


def _load(name):
    return json.loads((REAL / name).read_text())


def test_the_nvidia_smi_fallback_reads_a_real_driver_exactly_as_nvml_does():
    gpus = parse_nvidia_smi_csv(
        (REAL / "nvidia-smi-query.csv").read_text(), QUERY_FIELDS, (REAL / "nvidia-smi-list.txt").read_text()
    )
    minors = minor_numbers_from_query((REAL / "nvidia-smi-query.txt").read_text())
    for gpu in gpus:
        gpu["minor_number"] = minors.get(gpu["pci_bus_id"].upper())
    nvml = _load("gpu_facts-nvml.json")
    assert gpus == nvml["gpus"] == _load("gpu_facts-nvidia-smi.json")["gpus"]
    assert cuda_version_from_smi_banner((REAL / "nvidia-smi-banner.txt").read_text()) == nvml["cuda_version"] == "13.0"


def _probe_module():
    spec = importlib.util.spec_from_file_location("real_gpu_check", REPO / "tests" / "device" / "real_gpu_check.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_instance_confinement_proven_on_a_real_gpu_is_the_one_the_role_installs():
    """The probe ran CUDA under ollama@.service's [Service] settings: if they change, record it again."""
    probe = _probe_module()
    unit = probe.render(
        "ollama@.service.j2", ollama_user="ollama", ollama_group="ollama", ollama_config_dir="/etc/ollama",
        ollama_bin_link="/usr/local/bin/ollama", ollama_home="/var/lib/ollama", ollama_models_dir="/var/lib/ollama/models",
    )  # fmt: skip
    now = [[k, v] for k, v in probe.service_settings(unit) if k not in probe.NOT_CONFINEMENT | {"User"}]
    recorded = _load("cuda-probe.json")
    assert now == recorded["confinement"], "ollama@.service.j2's confinement changed: re-run tests/device/"

    seen = {case["case"]: case["seen"] for case in recorded["cases"]}
    uuid = _load("gpu_facts-nvml.json")["gpus"][0]["uuid"]
    confined = [seen["own-gpu"], seen["own-gpu-by-uuid"], seen["other-gpu-only"]]
    assert all(s["Uid"].split()[0] != "0" and s["NoNewPrivs"] == "1" and s["CapEff"] == "0" * 16 for s in confined)
    # its own GPU: CUDA starts, allocates and runs; by index or by UUID
    for case in ("own-gpu", "own-gpu-by-uuid", "minor-unknown-fallback"):
        assert [d["uuid"] for d in seen[case]["devices"]] == [uuid], case
        assert seen[case]["cuInit"] == seen[case]["cuMemAlloc_64MiB"] == seen[case]["cuCtxSynchronize"] == 0, case
    # another instance's GPU only: the node is refused and CUDA finds no device (100 = CUDA_ERROR_NO_DEVICE)
    for case in ("other-gpu-only", "no-gpu-node"):
        assert seen[case]["open"]["nvidia0"] == "Operation not permitted" and seen[case]["cuInit"] == 100, case
        assert seen[case]["devices"] == [], case
