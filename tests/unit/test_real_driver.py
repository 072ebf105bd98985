"""What a real NVIDIA driver printed (an H100 and an H200, driver 580.159.04, recorded by tests/device/), held
against the code.

CI has no GPU; these fixtures are the part of the real world the simulated driver stands in for.
Re-record on a GPU machine with tests/device/boot_probe_host.sh (docs/testing.md: "Checked on a real GPU").
"""

import importlib.util
import json

import pytest
import yaml
from ansible.errors import AnsibleFilterError
from ansible_collections.ollama.fleet.plugins.module_utils.gpu_inventory import (
    QUERY_FIELDS,
    cuda_version_from_smi_banner,
    minor_numbers_from_query,
    parse_nvidia_smi_csv,
)
from conftest import FIXTURES, REPO
from ollama_vram import ollama_fit_check

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


H200 = FIXTURES / "real-driver" / "h200-580.159.04"
CATALOGUE = yaml.safe_load((REPO / "roles/ollama/vars/main/known_models.yml").read_text())["__ollama_known_models"]


def test_an_h200s_three_pinned_models_are_planned_together_as_recorded():
    """Issue 24's example on a real H200 (NVML: 140.4 GiB): plan.yml refused the three models together with
    ollama_fit_policy fail and lowered the context to 65536 with adjust. The same layout, checked here
    again, gives the same message and the same plan."""
    recorded = json.loads((H200 / "plan-trio-adjust.json").read_text())
    assert recorded["gpu_source"] == "nvml" and recorded["gpus"][0]["name"] == "NVIDIA H200"
    (adjusted,) = recorded["plan"]
    # the layout before the fit check: Ollama's automatic context, as trio.yml asks
    layout = {k: v for k, v in adjusted.items() if k not in ("fit", "together")}
    layout["settings"] = dict(adjusted["settings"], context_length=0)
    layout["env"] = dict(adjusted["env"], OLLAMA_CONTEXT_LENGTH="0")
    with pytest.raises(AnsibleFilterError) as refused:
        ollama_fit_check([layout], CATALOGUE)
    printed = " ".join((H200 / "plan-trio-fail.txt").read_text().split())
    message = str(refused.value).splitlines()[-1]
    assert message.startswith("instance 'trio' on real-gpu: its 3 pinned models loaded together need 135.0 GiB")
    assert message in printed
    (again,) = ollama_fit_check([layout], CATALOGUE, policy="adjust")
    assert again == adjusted
    assert adjusted["settings"]["context_length"] == 65536 and adjusted["together"]["status"] == "adjusted"


def test_four_pinned_models_on_one_real_gpu_raise_max_loaded_models():
    (four,) = json.loads((H200 / "plan-four-fail.json").read_text())["plan"]
    assert four["env"]["OLLAMA_MAX_LOADED_MODELS"] == "4" and four["together"]["status"] == "fits"
    assert (
        json.loads((H200 / "gpu_facts-nvml.json").read_text())["gpus"]
        == json.loads((H200 / "plan-four-fail.json").read_text())["gpus"]
    )
