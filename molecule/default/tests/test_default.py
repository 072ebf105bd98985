"""What an operator cares about on a freshly converged GPU host (testinfra, over SSH)."""

import json

import pytest

L20_COUNT = 8
PROBE = (
    "import json, pynvml as n; n.nvmlInit(); "
    "hs = [n.nvmlDeviceGetHandleByIndex(i) for i in range(n.nvmlDeviceGetCount())]; "
    "print(json.dumps([dict(name=n.nvmlDeviceGetName(h), uuid=n.nvmlDeviceGetUUID(h), "
    "total=n.nvmlDeviceGetMemoryInfo(h).total, cc=list(n.nvmlDeviceGetCudaComputeCapability(h))) for h in hs]))"
)


def test_host_boots_systemd_as_pid1_and_is_running(host):
    assert host.process.get(pid=1).comm == "systemd"
    assert host.run("systemctl is-system-running --wait").stdout.strip() == "running"


def test_nvidia_ml_py_reads_the_eight_simulated_l20s_through_libnvidia_ml(host):
    probe = host.run(f"/opt/ollama-fleet/nvml/bin/python -c '{PROBE}'")
    assert probe.rc == 0, probe.stderr
    gpus = json.loads(probe.stdout)
    assert len(gpus) == L20_COUNT
    assert {g["name"] for g in gpus} == {"NVIDIA L20"}
    assert {g["total"] for g in gpus} == {49140 * 2**20}
    assert {tuple(g["cc"]) for g in gpus} == {(8, 9)}
    assert len({g["uuid"] for g in gpus}) == L20_COUNT
    # pynvml (installed by the role from the shipped wheel) found the library as on a GPU server: by soname
    assert "libnvidia-ml.so.1" in host.run("ldconfig -p").stdout


def test_nvidia_smi_prints_the_same_gpus_as_nvml(host):
    probe = json.loads(host.check_output(f"/opt/ollama-fleet/nvml/bin/python -c '{PROBE}'"))
    smi = host.check_output(
        "nvidia-smi --query-gpu=index,uuid,name,memory.total,compute_cap --format=csv,noheader,nounits"
    )
    rows = [line.split(", ") for line in smi.splitlines()]
    assert rows == [
        [str(i), g["uuid"], g["name"], str(g["total"] // 2**20), ".".join(map(str, g["cc"]))]
        for i, g in enumerate(probe)
    ]


def test_ollama_is_installed_from_the_offline_archive_at_the_pinned_version(host):
    link = host.file("/usr/local/bin/ollama")
    assert link.is_symlink and link.linked_to == "/opt/ollama/0.33.0/bin/ollama"
    # the CLI asks 127.0.0.1:11434, the gateway here: server and client agree on the pinned version
    assert host.check_output("ollama --version") == "ollama version is 0.33.0"


def test_ollama_account_and_shared_model_store(host):
    user = host.user("ollama")
    assert user.shell == "/usr/sbin/nologin" and "video" in user.groups
    store = host.file("/var/lib/ollama/models")
    assert store.is_directory and store.user == "ollama"


def test_stock_ollama_service_is_masked(host):
    assert host.run("systemctl is-enabled ollama.service").stdout.strip() == "masked"


@pytest.fixture
def transient_instance(host):
    """The installed binary run as the ollama user on GPUs 0-1, the way an instance unit will run it."""
    host.run_expect(
        [0],
        "systemd-run --unit=olt-probe --uid=ollama --gid=ollama "
        "-E OLLAMA_HOST=127.0.0.1:11500 -E OLLAMA_MODELS=/var/lib/ollama/models "
        "-E CUDA_VISIBLE_DEVICES=0,1 /usr/local/bin/ollama serve",
    )
    yield "http://127.0.0.1:11500"
    host.run("systemctl stop olt-probe")


def test_installed_stand_in_serves_the_api_on_its_gpus(host, transient_instance):
    version = host.run(f"curl -sf --retry 20 --retry-connrefused --retry-delay 0 {transient_instance}/api/version")
    assert json.loads(version.stdout) == {"version": "0.33.0"}
    headers = host.check_output(f"curl -sfI {transient_instance}/")
    gpus = json.loads(host.check_output("cat /etc/nvidia-sim/gpus.json"))["gpus"]
    assert f"X-Ollama-Gpus: {gpus[0]['uuid']},{gpus[1]['uuid']}" in headers


NVML_PYTHON = {"ansible_python_interpreter": "/opt/ollama-fleet/nvml/bin/python"}
SYSTEM_PYTHON = {"ansible_python_interpreter": "/usr/bin/python3"}


def test_gpu_facts_reads_all_eight_gpus_through_nvml(host):
    facts = host.ansible("ollama.fleet.gpu_facts", "", check=True, extra_vars=NVML_PYTHON)
    assert facts["source"] == "nvml" and facts["reason"] == ""
    assert len(facts["gpus"]) == L20_COUNT
    assert facts["driver_version"] == "570.133.20" and facts["cuda_version"] == "12.8"
    assert facts["gpus"][7]["memory_total"] == 49140 * 2**20 and facts["gpus"][7]["compute_capability"] == "8.9"


def test_gpu_facts_falls_back_to_nvidia_smi_with_identical_results(host):
    assert host.run("/usr/bin/python3 -c 'import pynvml'").rc != 0, "the system Python must lack nvidia-ml-py"
    nvml = host.ansible("ollama.fleet.gpu_facts", "", check=True, extra_vars=NVML_PYTHON)
    smi = host.ansible("ollama.fleet.gpu_facts", "", check=True, extra_vars=SYSTEM_PYTHON)
    assert smi["source"] == "nvidia-smi"
    assert smi["gpus"] == nvml["gpus"]
    assert (smi["driver_version"], smi["cuda_version"]) == (nvml["driver_version"], nvml["cuda_version"])


def test_gpu_facts_without_a_driver_says_why(host):
    host.check_output("mv /etc/nvidia-sim/gpus.json /etc/nvidia-sim/gpus.json.away")
    try:
        facts = host.ansible("ollama.fleet.gpu_facts", "", check=True, extra_vars=NVML_PYTHON)
    finally:
        host.check_output("mv /etc/nvidia-sim/gpus.json.away /etc/nvidia-sim/gpus.json")
    assert facts["gpus"] == [] and facts["source"] == "none"
    assert "NVML: Driver Not Loaded" in facts["reason"]
    assert "couldn't communicate with the NVIDIA driver" in facts["reason"]
