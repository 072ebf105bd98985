"""The simulated GPUs answer nvidia-ml-py and nvidia-smi consistently, from one spec file."""

import json
import os
import subprocess
import sys

import pytest
from conftest import SPECS, TESTS

SMI = TESTS / "gpu_sim" / "nvidia-smi"
PROBE = r"""
import json, pynvml as n
try:
    n.nvmlInit()
except n.NVMLError as e:
    print(json.dumps({"error": str(e), "type": type(e).__name__})); raise SystemExit
gpus = []
for i in range(n.nvmlDeviceGetCount()):
    h = n.nvmlDeviceGetHandleByIndex(i)
    mem = n.nvmlDeviceGetMemoryInfo(h)
    try:
        mig = n.nvmlDeviceGetMigMode(h)[0]
    except n.NVMLError_NotSupported:
        mig = None
    migs = []
    for k in range(n.nvmlDeviceGetMaxMigDeviceCount(h) if mig else 0):
        try:
            d = n.nvmlDeviceGetMigDeviceHandleByIndex(h, k)
        except n.NVMLError_NotFound:
            continue
        migs.append({"uuid": n.nvmlDeviceGetUUID(d), "total": n.nvmlDeviceGetMemoryInfo(d).total,
                     "gi": n.nvmlDeviceGetGpuInstanceId(d)})
    gpus.append({"name": n.nvmlDeviceGetName(h), "uuid": n.nvmlDeviceGetUUID(h), "total": mem.total,
                 "free": mem.free, "bus": n.nvmlDeviceGetPciInfo(h).busId,
                 "cc": list(n.nvmlDeviceGetCudaComputeCapability(h)), "mig": mig, "migs": migs,
                 "by_uuid": n.nvmlDeviceGetIndex(n.nvmlDeviceGetHandleByUUID(n.nvmlDeviceGetUUID(h)))})
print(json.dumps({"driver": n.nvmlSystemGetDriverVersion(), "cuda": n.nvmlSystemGetCudaDriverVersion(),
                  "gpus": gpus}))
n.nvmlShutdown()
"""


def probe(fake_nvml_dir, spec):
    env = {**os.environ, "LD_LIBRARY_PATH": str(fake_nvml_dir), "NVML_SIM_SPEC": str(SPECS / spec)}
    out = subprocess.run([sys.executable, "-c", PROBE], env=env, capture_output=True, text=True, check=True)
    return json.loads(out.stdout)


def smi(spec, *args):
    env = {**os.environ, "NVML_SIM_SPEC": str(SPECS / spec)}
    return subprocess.run([sys.executable, str(SMI), *args], env=env, capture_output=True, text=True)


@pytest.mark.parametrize("spec", ["l20x8.json", "a100x4.json", "mixed.json", "h100-mig.json"])
def test_pynvml_reads_every_gpu_of_the_spec(fake_nvml_dir, spec):
    want = json.loads((SPECS / spec).read_text())
    got = probe(fake_nvml_dir, spec)
    assert got["driver"] == want["driver_version"] and got["cuda"] == want["cuda_driver_version"]
    assert [g["uuid"] for g in got["gpus"]] == [g["uuid"] for g in want["gpus"]]
    for index, (g, w) in enumerate(zip(got["gpus"], want["gpus"], strict=True)):
        assert g["name"] == w["name"] and g["total"] == w["memory_total"]
        assert g["free"] == w["memory_total"] - w["memory_used"]
        assert g["cc"] == [int(x) for x in w["compute_capability"].split(".")]
        assert g["bus"] == w["pci_bus_id"] and g["by_uuid"] == index


def test_eight_l20s_as_the_seeds_box_has_them(fake_nvml_dir):
    got = probe(fake_nvml_dir, "l20x8.json")["gpus"]
    assert len(got) == 8 and {g["name"] for g in got} == {"NVIDIA L20"}
    assert {g["total"] // 2**20 for g in got} == {49140} and {tuple(g["cc"]) for g in got} == {(8, 9)}
    assert len({g["uuid"] for g in got}) == 8 and all(g["uuid"].startswith("GPU-") for g in got)
    assert all(g["mig"] is None for g in got), "L20 does not support MIG"


def test_mig_devices_are_listed_with_their_own_memory(fake_nvml_dir):
    (h100,) = probe(fake_nvml_dir, "h100-mig.json")["gpus"]
    assert h100["mig"] == 1
    assert [m["gi"] for m in h100["migs"]] == [2, 3, 4]
    assert all(m["uuid"].startswith("MIG-") for m in h100["migs"])
    assert sum(m["total"] for m in h100["migs"]) < h100["total"]


def test_host_without_gpu_fails_init_with_nvmls_message(fake_nvml_dir):
    assert probe(fake_nvml_dir, "nogpu.json") == {"error": "Driver Not Loaded", "type": "NVMLError_DriverNotLoaded"}
    out = smi("nogpu.json", "--query-gpu=index", "--format=csv,noheader")
    assert out.returncode == 9 and "couldn't communicate with the NVIDIA driver" in out.stdout


@pytest.mark.parametrize("spec", ["l20x8.json", "mixed.json", "a100x4.json", "h100-mig.json"])
def test_nvidia_smi_csv_matches_nvml(fake_nvml_dir, spec):
    fields = "index,uuid,name,memory.total,memory.free,pci.bus_id,compute_cap,driver_version"
    out = smi(spec, f"--query-gpu={fields}", "--format=csv,noheader,nounits")
    assert out.returncode == 0, out.stdout
    rows = [line.split(", ") for line in out.stdout.splitlines()]
    nvml = probe(fake_nvml_dir, spec)
    assert len(rows) == len(nvml["gpus"])
    for row, g in zip(rows, nvml["gpus"], strict=True):
        assert row[1:3] == [g["uuid"], g["name"]]
        assert (int(row[3]), int(row[4])) == (g["total"] // 2**20, g["free"] // 2**20)
        assert row[5:] == [g["bus"], ".".join(map(str, g["cc"])), nvml["driver"]]


def test_nvidia_smi_rejects_unknown_fields_and_prints_units_without_nounits():
    bad = smi("l20x8.json", "--query-gpu=index,bogus", "--format=csv")
    assert bad.returncode == 2 and 'Field "bogus" is not a valid field to query.' in bad.stdout
    header, first = smi("l20x8.json", "--query-gpu=name,memory.total", "--format=csv").stdout.splitlines()[:2]
    assert header == "name, memory.total [MiB]" and first == "NVIDIA L20, 49140 MiB"


@pytest.mark.parametrize("select", [("-i", "0,2"), ("-i=0,2",), ("--id=0,2",)])
def test_nvidia_smi_selects_gpus_by_index_in_either_spelling(select):
    run = smi("mixed.json", *select, "--query-gpu=index,name", "--format=csv,noheader")
    assert run.returncode == 0, run.stdout
    assert run.stdout.splitlines() == ["0, NVIDIA GeForce RTX 4090", "2, NVIDIA GeForce RTX 3090"]
