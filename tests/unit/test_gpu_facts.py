"""gpu_facts on the controller, through the real pynvml and the simulated driver."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import REPO, SPECS, TESTS


def gpu_facts(fake_nvml_dir, tmp_path, spec, source="auto", **args):
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(exist_ok=True)
    if not (bin_dir / "nvidia-smi").exists():
        (bin_dir / "nvidia-smi").symlink_to(TESTS / "gpu_sim" / "nvidia-smi")
    env = {
        **os.environ,
        "PATH": f"{bin_dir}:{os.environ['PATH']}",
        "LD_LIBRARY_PATH": str(fake_nvml_dir),
        "NVML_SIM_SPEC": str(SPECS / f"{spec}.json"),
        "ANSIBLE_CONFIG": str(REPO / "ansible.cfg"),
    }
    ansible = str(Path(sys.executable).parent / "ansible")
    run = subprocess.run(
        [ansible, "localhost", "-c", "local", "-e", f"ansible_python_interpreter={sys.executable}",
         "-m", "ollama.fleet.gpu_facts", "-a", json.dumps({"source": source, **args}), "--tree", str(tmp_path / "tree")],
        env=env, capture_output=True, text=True, cwd=REPO, timeout=60,
    )  # fmt: skip
    assert run.returncode == 0, run.stdout + run.stderr
    return json.loads((tmp_path / "tree" / "localhost").read_text())


@pytest.mark.parametrize("spec", ["l20x8", "a100x4", "mixed"])
def test_nvml_and_nvidia_smi_agree(fake_nvml_dir, tmp_path, spec):
    nvml = gpu_facts(fake_nvml_dir, tmp_path, spec, "nvml")
    smi = gpu_facts(fake_nvml_dir, tmp_path, spec, "nvidia-smi")
    assert (nvml["source"], smi["source"]) == ("nvml", "nvidia-smi")
    # the minor number (N of /dev/nvidiaN): NVML's, or nvidia-smi -q's "Minor Number"; both the spec's
    spec_gpus = json.loads((SPECS / f"{spec}.json").read_text())["gpus"]
    assert [g["minor_number"] for g in nvml["gpus"]] == [g.get("minor_number", i) for i, g in enumerate(spec_gpus)]
    assert nvml["gpus"] == smi["gpus"] and nvml["changed"] is False
    assert nvml["driver_version"] == smi["driver_version"] and nvml["cuda_version"] == smi["cuda_version"] == "12.8"


def test_nvml_reports_mig_devices_with_their_exact_memory(fake_nvml_dir, tmp_path):
    (h100,) = gpu_facts(fake_nvml_dir, tmp_path, "h100-mig")["gpus"]
    assert h100["mig_mode"] is True
    assert [(m["profile"], m["memory_total"] // 2**20, m["gpu_instance_id"]) for m in h100["mig_devices"]] == [
        ("3g.40gb", 40448, 2),
        ("2g.20gb", 20096, 3),
        ("2g.20gb", 20096, 4),
    ]


def test_no_driver_is_an_empty_list_and_a_reason_not_a_failure(fake_nvml_dir, tmp_path):
    facts = gpu_facts(fake_nvml_dir, tmp_path, "nogpu")
    assert facts["gpus"] == [] and facts["source"] == "none" and not facts.get("failed")
    assert facts["reason"].startswith("NVML: Driver Not Loaded; nvidia-smi: NVIDIA-SMI has failed")


def test_the_same_run_reads_the_architecture_and_the_routes_the_plan_needs(fake_nvml_dir, tmp_path):
    # one module run per host brings everything planning reads from it (issue 28); `ip route get` is iproute2's own
    gateways = [{"name": "gw-local", "address": "127.0.0.1"}, {"name": "gw-bad", "address": "not-an-address"}]
    facts = gpu_facts(fake_nvml_dir, tmp_path, "a100x4", routes_to=gateways)
    assert facts["architecture"] == os.uname().machine and len(facts["gpus"]) == 4
    local, bad = facts["routes"]
    assert local["item"] == gateways[0] and local["rc"] == 0
    assert json.loads(local["stdout"])[0]["prefsrc"] == "127.0.0.1"
    assert bad["item"] == gateways[1] and bad["rc"] != 0 and bad["stderr"]


def test_gpus_the_inventory_pins_are_not_discovered(fake_nvml_dir, tmp_path):
    facts = gpu_facts(fake_nvml_dir, tmp_path, "a100x4", "none")
    assert facts["gpus"] == [] and facts["source"] == "none" and "pins" in facts["reason"]
    assert facts["architecture"] == os.uname().machine and facts["routes"] == []
