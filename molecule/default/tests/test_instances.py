"""The seeds' layout on the 8x L20 host: one hardened, ready unit per GPU group (testinfra, over SSH)."""

import json
import re

import pytest
from helpers.fleet import process_env, wait_for_full_rotation
from helpers.ollama_client import call

NAME = "olt-default-gpu1"  # GPU host and gateway

# name → (GPU indices, port, settings the inventory gives it) as in molecule.yml
INSTANCES = {
    "small": ([0, 1], 11435, {"OLLAMA_NUM_PARALLEL": "4", "OLLAMA_CONTEXT_LENGTH": "8192"}),
    "large": ([2, 3, 4, 5, 6], 11436, {"OLLAMA_NUM_PARALLEL": "2", "OLLAMA_CONTEXT_LENGTH": "32768"}),
    "solo": ([7], 11437, {"OLLAMA_NUM_PARALLEL": "1", "OLLAMA_CONTEXT_LENGTH": "8192"}),
}
COMMON = {
    "OLLAMA_FLASH_ATTENTION": "true",
    "OLLAMA_KV_CACHE_TYPE": "f16",
    "OLLAMA_KEEP_ALIVE": "-1",  # each pins a model (ollama_keep_alive left empty)
    "OLLAMA_LOAD_TIMEOUT": "5m",
    "OLLAMA_MAX_LOADED_MODELS": "0",
    "OLLAMA_MAX_QUEUE": "512",
    "OLLAMA_SCHED_SPREAD": "false",
    "OLLAMA_GPU_OVERHEAD": "0",
    "OLLAMA_DEBUG": "0",
    "OLLAMA_MODELS": "/var/lib/ollama/models",
}
MODELS = {"small": "llama3.1:8b", "large": "llama3.3:70b", "solo": "qwen3:0.6b"}


@pytest.fixture(scope="module")
def uuids(host):
    return [g["uuid"] for g in json.loads(host.check_output("cat /etc/nvidia-sim/gpus.json"))["gpus"]]


def ps(host, port):
    return json.loads(host.check_output(f"curl -sf http://127.0.0.1:{port}/api/ps"))["models"]


def standin_ps(host, port):
    """The stand-in's own view (not Ollama's API): its GPUs, the environment it got, per model the GPUs holding it."""
    return json.loads(host.check_output(f"curl -sf http://127.0.0.1:{port}/standin/ps"))


@pytest.mark.parametrize("name", INSTANCES)
def test_unit_is_active_and_enabled(host, name):
    unit = host.service(f"ollama@{name}")
    assert unit.is_running and unit.is_enabled


@pytest.mark.parametrize("name", INSTANCES)
def test_each_instance_listens_only_on_its_own_port_on_loopback(host, name):
    pid = host.check_output(f"systemctl show -p MainPID --value ollama@{name}.service")
    listening = host.check_output(f"ss -Hltnp | grep 'pid={pid},' | awk '{{print $4}}'").split()
    assert listening == [f"127.0.0.1:{INSTANCES[name][1]}"]


@pytest.mark.parametrize("name", INSTANCES)
def test_cuda_visible_devices_are_the_groups_uuids(host, uuids, name):
    indices = INSTANCES[name][0]
    expected = ",".join(uuids[i] for i in indices)
    assert process_env(host, name)["CUDA_VISIBLE_DEVICES"] == expected
    # its model on the group's GPUs only: on one of them where 80 % of its free memory holds the model,
    # as Ollama places it (server/sched.go bestSingleGPUFit), else on all of them
    (model,) = standin_ps(host, INSTANCES[name][1])["models"]
    assert model["gpus"] and set(model["gpus"]) <= {uuids[i] for i in indices}


@pytest.mark.parametrize("name", INSTANCES)
def test_ollama_settings_reach_the_process_as_configured(host, name):
    _, port, own = INSTANCES[name]
    expected = {**COMMON, **own, "OLLAMA_HOST": f"127.0.0.1:{port}"}
    from_systemd = process_env(host, name)
    (model,) = ps(host, port)
    from_ollama = standin_ps(host, port)["env"]
    for variable, value in expected.items():
        assert from_systemd[variable] == value, variable
        assert from_ollama[variable] == value, variable
    assert model["context_length"] == int(own["OLLAMA_CONTEXT_LENGTH"])


@pytest.mark.parametrize("name", INSTANCES)
def test_unit_exposure_is_at_most_3(host, name):
    report = host.check_output(f"systemd-analyze security ollama@{name}.service")
    exposure = float(re.search(r"Overall exposure level for ollama@\S+: ([\d.]+)", report).group(1))
    assert exposure <= 3.0


def test_unit_template_verifies_and_restarts_on_failure(host):
    assert host.run("systemd-analyze verify /etc/systemd/system/ollama@.service:ollama@probe.service").rc == 0
    props = host.check_output("systemctl show -p Restart -p StartLimitBurst -p User ollama@small.service")
    assert dict(line.split("=", 1) for line in props.splitlines()) == {
        "Restart": "on-failure",
        "User": "ollama",
        "StartLimitBurst": "5",
    }


def test_pinned_models_pulled_once_into_the_shared_store_and_warm(host):
    tags = json.loads(host.check_output("curl -sf http://127.0.0.1:11437/api/tags"))["models"]
    assert sorted(m["name"] for m in tags) == sorted(MODELS.values())
    manifests = host.check_output("find /var/lib/ollama/models/manifests -type f | wc -l")
    assert int(manifests) == 3
    for name, model in MODELS.items():
        loaded = ps(host, INSTANCES[name][1])
        assert [m["name"] for m in loaded] == [model]
        assert loaded[0]["size_vram"] == loaded[0]["size"], f"{model} spilled to CPU on {name}"


def test_a_killed_instance_comes_back(host):
    before = host.check_output("systemctl show -p MainPID --value ollama@solo.service")
    host.check_output(f"kill -KILL {before}")  # the main process (systemctl kill may fail on its cgroup)
    # RestartSec=3 and the process's start: a deadline, not a count of tries
    back = host.run("timeout 60 sh -c 'until curl -sf http://127.0.0.1:11437/api/version; do sleep 0.2; done'")
    assert back.rc == 0, "ollama@solo did not answer within 60 s of being killed"
    assert host.check_output("systemctl show -p MainPID --value ollama@solo.service") != before
    # and the gateway serves it again once its health checker sees it answer (it may have held it out meanwhile)
    wait_for_full_rotation(NAME)
    body = {"model": MODELS["solo"], "prompt": "back?", "stream": False, "options": {"num_predict": 1}}
    answer = call("http://10.213.0.11:11434/api/generate", body)
    assert answer.status == 200 and answer.headers["x-ollama-instance"] == f"{NAME}:11437"


@pytest.mark.parametrize("name", INSTANCES)
def test_each_unit_may_open_only_its_own_gpus(host, name):
    """DeviceAllow: the instance's /dev/nvidiaN (minor numbers from NVML; the spec's equal the indices), the
    shared control/UVM/modeset/caps nodes, and not the class that holds every GPU (char-nvidia-frontend)."""
    raw = host.check_output(f"systemctl show -p DeviceAllow --value ollama@{name}.service").split()
    allowed = dict(zip(raw[::2], raw[1::2], strict=True))
    gpu_nodes = {node for node in allowed if re.fullmatch(r"/dev/nvidia\d+", node)}
    assert gpu_nodes == {f"/dev/nvidia{i}" for i in INSTANCES[name][0]}
    assert {"/dev/nvidiactl", "/dev/nvidia-uvm", "/dev/nvidia-uvm-tools"} <= set(allowed)
    assert "char-nvidia-frontend" not in allowed and "char-nvidia" not in allowed


def test_device_nodes_are_made_before_any_instance(host):
    """ollama-nvidia-devices.service runs at boot before the instances (they cannot load nvidia-uvm); on a host
    without the NVIDIA driver, like this one, its condition skips it instead of failing."""
    devices = host.service("ollama-nvidia-devices")
    assert devices.is_enabled
    checked = host.check_output(
        "systemctl show -p ConditionResult -p ConditionTimestampMonotonic ollama-nvidia-devices.service"
    )
    props = dict(line.split("=", 1) for line in checked.splitlines())
    # pulled in by the instances (Wants=), its condition was checked, and it said no: no driver here
    assert props["ConditionResult"] == "no" and int(props["ConditionTimestampMonotonic"]) > 0
    assert not devices.is_running
    for name in INSTANCES:
        after = host.check_output(f"systemctl show -p After --value ollama@{name}.service").split()
        assert "ollama-nvidia-devices.service" in after
