"""GPU grouping, ports, settings and every rejection of the instance plan."""

import copy

import pytest
from ansible.errors import AnsibleFilterError
from conftest import FIXTURES
from ollama_gpus import ollama_gpus_from_nvidia_smi
from ollama_plan import ollama_plan

SMI = FIXTURES / "nvidia-smi"
GIB = 2**30
SETTINGS = {
    "num_parallel": 1,
    "context_length": 8192,
    "flash_attention": True,
    "kv_cache_type": "f16",
    "keep_alive": "5m",
    "load_timeout": "5m",
    "max_loaded_models": 0,
    "max_queue": 512,
    "sched_spread": False,
    "gpu_overhead": 0,
    "origins": [],
    "debug": 0,
}
SEEDS = [
    {"name": "small", "gpus": [0, 1], "num_parallel": 4, "models": ["llama3.1:8b"]},
    {"name": "large", "gpus": [2, 3, 4, 5, 6], "context_length": 131072, "models": ["llama3.3:70b"]},
    {"name": "solo", "gpus": [7]},
]


def gpus(name):
    listing = SMI / f"{name}.list"
    return ollama_gpus_from_nvidia_smi(
        (SMI / f"{name}.csv").read_text(), list_output=listing.read_text() if listing.exists() else ""
    )


def config(**overrides):
    base = {"settings": dict(SETTINGS), "base_port": 11435, "gateway_ports": [11434], "models_dir": "/srv/models"}
    base.update(overrides)
    return base


def test_seeds_layout_on_eight_l20s():
    l20 = gpus("l20x8")
    plan = ollama_plan(l20, "gpu1", config(instances=SEEDS))
    assert [(i["name"], i["gpu_label"], i["port"]) for i in plan] == [
        ("small", "GPUs 0-1", 11435),
        ("large", "GPUs 2-6", 11436),
        ("solo", "GPU 7", 11437),
    ]
    small, large, _ = plan
    assert small["cuda_visible_devices"] == f"{l20[0]['uuid']},{l20[1]['uuid']}"
    assert large["vram_total"] == 5 * 49140 * 2**20
    assert small["env"]["OLLAMA_NUM_PARALLEL"] == "4" and large["env"]["OLLAMA_NUM_PARALLEL"] == "1"
    assert large["env"]["OLLAMA_CONTEXT_LENGTH"] == "131072" and small["env"]["OLLAMA_CONTEXT_LENGTH"] == "8192"
    assert small["env"]["OLLAMA_HOST"] == "127.0.0.1:11435" and small["env"]["OLLAMA_MODELS"] == "/srv/models"
    assert small["env"]["OLLAMA_FLASH_ATTENTION"] == "true" and small["env"]["OLLAMA_SCHED_SPREAD"] == "false"
    assert small["models"] == ["llama3.1:8b"] and plan[2]["models"] == []


def test_gpus_by_uuid_and_devices_by_index_when_asked():
    l20 = gpus("l20x8")
    plan = ollama_plan(
        l20, "gpu1", config(cuda_devices_by="index", instances=[{"name": "a", "gpus": [l20[3]["uuid"], 5]}])
    )
    assert plan[0]["cuda_visible_devices"] == "3,5" and plan[0]["gpu_label"] == "GPUs 3,5"


@pytest.mark.parametrize(
    "strategy, extra, groups",
    [
        ("per_gpu", {}, [[i] for i in range(8)]),
        ("all", {}, [list(range(8))]),
        ("fixed", {"group_size": 3}, [[0, 1, 2], [3, 4, 5], [6, 7]]),
        ("balanced", {"group_count": 4}, [[0, 4], [1, 5], [2, 6], [3, 7]]),
    ],
)
def test_strategies_on_eight_l20s(strategy, extra, groups):
    plan = ollama_plan(gpus("l20x8"), "gpu1", config(strategy=strategy, **extra))
    assert [[g["index"] for g in i["gpus"]] for i in plan] == groups
    assert [i["port"] for i in plan] == list(range(11435, 11435 + len(groups)))
    assert len({i["name"] for i in plan}) == len(groups)


def test_balanced_evens_memory_on_a_mixed_host():
    plan = ollama_plan(gpus("mixed"), "ws", config(strategy="balanced", group_count=2))
    totals = sorted(i["vram_total"] for i in plan)
    assert sorted(g["index"] for i in plan for g in i["gpus"]) == [0, 1, 2]
    # 3 GPUs of ~24 GiB in 2 groups: one GPU alone, two together, never three in one
    assert [len(i["gpus"]) for i in sorted(plan, key=lambda i: i["vram_total"])] == [1, 2]
    assert totals[1] - totals[0] < 25 * GIB


def test_mig_devices_each_get_an_instance():
    plan = ollama_plan(gpus("h100-mig"), "h100", config(strategy="per_gpu"))
    assert [i["name"] for i in plan] == ["mig0-0", "mig0-1", "mig0-2"]
    assert all(i["cuda_visible_devices"].startswith("MIG-") for i in plan)
    assert plan[0]["vram_total"] == 40 * GIB and plan[0]["gpu_label"] == "MIG 0/0"


@pytest.mark.parametrize("port", [11435, "11435"])  # YAML or -e may give the port as a string
def test_ports_skip_explicit_and_gateway_ports(port):
    plan = ollama_plan(
        gpus("a100x4"),
        "a100",
        config(
            base_port=11434,
            gateway_ports=[11434, 11436],
            instances=[
                {"name": "a", "gpus": [0]},
                {"name": "b", "gpus": [1], "port": port},
                {"name": "c", "gpus": [2]},
            ],
        ),
    )
    assert [i["port"] for i in plan] == [11437, 11435, 11438]


def test_instance_settings_override_host_settings_and_extra_env_merges():
    plan = ollama_plan(
        gpus("a100x4"),
        "a100",
        config(
            extra_env={"OLLAMA_NOPRUNE": "1", "HTTPS_PROXY": "http://proxy:3128"},
            instances=[{"name": "a", "gpus": [0], "keep_alive": "-1", "extra_env": {"OLLAMA_NOPRUNE": "0"}}],
        ),
    )
    env = plan[0]["env"]
    assert env["OLLAMA_KEEP_ALIVE"] == "-1" and env["OLLAMA_LOAD_TIMEOUT"] == "5m"
    assert env["OLLAMA_NOPRUNE"] == "0" and env["HTTPS_PROXY"] == "http://proxy:3128"


def test_decimal_strings_from_extra_vars_are_accepted():
    plan = ollama_plan(gpus("a100x4"), "a100", config(settings=dict(SETTINGS, num_parallel="4"), strategy="all"))
    assert plan[0]["settings"]["num_parallel"] == 4


def seeds_with(**changes):
    """The seeds' layout with one instance changed: changes = {position: {key: value or None to delete}}."""
    instances = copy.deepcopy(SEEDS)
    for position, change in changes.items():
        for key, value in change.items():
            if value is None:
                instances[int(position)].pop(key, None)
            else:
                instances[int(position)][key] = value
    return instances


L20_UUID_0 = "GPU-0f08811b-d814-586e-aaf1-d9315f58d54d"
REJECTIONS = {
    "overlapping GPUs": (
        "l20x8",
        config(instances=seeds_with(**{"2": {"gpus": [6, 7]}})),
        "host gpu1, instance 'solo', field gpus: GPU 6 (GPU-f6c3a722-b022-5801-981c-79d61ce57167) is already in instance 'large'",
    ),
    "unknown index": (
        "l20x8",
        config(instances=seeds_with(**{"2": {"gpus": [8]}})),
        "host gpu1, instance 'solo', field gpus: GPU 8 does not exist on this host; valid: indices 0, 1, 2, 3, 4, 5, 6, 7",
    ),
    "unknown UUID": (
        "l20x8",
        config(instances=seeds_with(**{"2": {"gpus": ["GPU-nope"]}})),
        "instance 'solo', field gpus: GPU 'GPU-nope' does not exist on this host; valid: indices",
    ),
    "GPU listed twice": (
        "l20x8",
        config(instances=seeds_with(**{"0": {"gpus": [0, L20_UUID_0]}})),
        f"instance 'small', field gpus: GPU '{L20_UUID_0}' is listed twice",
    ),
    "empty group": (
        "l20x8",
        config(instances=seeds_with(**{"2": {"gpus": []}})),
        "instance 'solo', field gpus: must be a non-empty list of GPU indices or UUIDs",
    ),
    "duplicate names": (
        "l20x8",
        config(instances=seeds_with(**{"2": {"name": "small"}})),
        "instance 'small', field name: used by another instance on this host",
    ),
    "bad name": (
        "l20x8",
        config(instances=seeds_with(**{"2": {"name": "Solo Box"}})),
        "instance 'Solo Box', field name: must be 1-32 of a-z, 0-9",
    ),
    "duplicate ports": (
        "l20x8",
        config(instances=seeds_with(**{"1": {"port": 12000}, "2": {"port": 12000}})),
        "instance 'solo', field port: 12000 is used by another instance on this host",
    ),
    "port out of range": (
        "l20x8",
        config(instances=seeds_with(**{"2": {"port": 80}})),
        "instance 'solo', field port: must be an integer from 1024 to 65535, got 80",
    ),
    "port on the gateway's": (
        "l20x8",
        config(instances=seeds_with(**{"2": {"port": 11434}})),
        "instance 'solo', field port: 11434 is the gateway's port on this host",
    ),
    "num_parallel < 1": (
        "l20x8",
        config(instances=seeds_with(**{"0": {"num_parallel": 0}})),
        "instance 'small', field num_parallel: must be an integer from 1 up, got 0",
    ),
    "num_parallel wrong type": (
        "l20x8",
        config(instances=seeds_with(**{"0": {"num_parallel": "four"}})),
        "instance 'small', field num_parallel: must be an integer, got 'four' (str)",
    ),
    "host setting wrong type": (
        "l20x8",
        config(strategy="all", settings=dict(SETTINGS, flash_attention="yes")),
        "host gpu1, field ollama_flash_attention: must be true or false, got 'yes' (str)",
    ),
    "kv cache type": (
        "l20x8",
        config(instances=seeds_with(**{"1": {"kv_cache_type": "q5_1"}})),
        "instance 'large', field kv_cache_type: must be one of f16, q8_0, q4_0",
    ),
    "debug out of range": (
        "l20x8",
        config(instances=seeds_with(**{"1": {"debug": 3}})),
        "instance 'large', field debug: must be an integer from 0 to 2, got 3",
    ),
    "duration": (
        "l20x8",
        config(instances=seeds_with(**{"1": {"keep_alive": "5 minutes"}})),
        "instance 'large', field keep_alive: must be a duration like \"5m\"",
    ),
    "unknown instance key": (
        "l20x8",
        config(instances=seeds_with(**{"0": {"num_paralel": 4}})),
        "instance 'small', field num_paralel: unknown key; valid: context_length, debug,",
    ),
    "unknown OLLAMA_ name": (
        "l20x8",
        config(instances=seeds_with(**{"0": {"extra_env": {"OLLAMA_FLASH_ATTN": "1"}}})),
        "instance 'small', field extra_env.OLLAMA_FLASH_ATTN: not an Ollama v0.33 variable; valid in extra_env:",
    ),
    "not an Ollama variable at all": (
        "l20x8",
        config(strategy="all", extra_env={"OLLAMA_NUM_GPU_LAYERS": "99"}),
        "host gpu1, field ollama_extra_env.OLLAMA_NUM_GPU_LAYERS: not an Ollama v0.33 variable",
    ),
    "removed variable": (
        "l20x8",
        config(strategy="all", extra_env={"OLLAMA_MAX_VRAM": "1"}),
        "field ollama_extra_env.OLLAMA_MAX_VRAM: removed from Ollama, it has no effect in v0.33",
    ),
    "typed setting through extra_env": (
        "l20x8",
        config(instances=seeds_with(**{"0": {"extra_env": {"OLLAMA_NUM_PARALLEL": "8"}}})),
        "field extra_env.OLLAMA_NUM_PARALLEL: set by the toolkit from the field num_parallel; use that",
    ),
    "pinning through extra_env": (
        "l20x8",
        config(strategy="all", extra_env={"CUDA_VISIBLE_DEVICES": "0"}),
        "field ollama_extra_env.CUDA_VISIBLE_DEVICES: set by the toolkit from the instance's gpus",
    ),
    "MIG mixed with a whole GPU": (
        "h100-mig",
        config(instances=[{"name": "m", "gpus": ["MIG-372ff304-35ee-5c0d-b3c0-5215fce273f5", 0]}]),
        "host gpu1, instance 'm', field gpus: GPU 0 is in MIG mode and cannot be used whole; list its MIG devices",
    ),
    "two MIG devices in one instance": (
        "h100-mig",
        config(
            instances=[
                {
                    "name": "m",
                    "gpus": ["MIG-372ff304-35ee-5c0d-b3c0-5215fce273f5", "MIG-3153f451-8d0b-5f59-b0f6-5e5d91bf63cb"],
                }
            ]
        ),
        "instance 'm', field gpus: several MIG devices; CUDA uses one MIG device per process",
    ),
    "unknown strategy": (
        "l20x8",
        config(strategy="round_robin"),
        "host gpu1, field ollama_gpu_strategy: 'round_robin' is unknown; valid: per_gpu, all, fixed, balanced",
    ),
    "fixed without a size": (
        "l20x8",
        config(strategy="fixed"),
        "host gpu1, field ollama_gpu_group_size: must be an integer, got None",
    ),
    "balanced beyond the GPUs": (
        "mixed",
        config(strategy="balanced", group_count=4),
        "host gpu1, field ollama_gpu_group_count: 4 groups need at least 4 GPUs; this host has 3",
    ),
    "models not a list": (
        "l20x8",
        config(instances=seeds_with(**{"0": {"models": "llama3.1:8b"}})),
        "instance 'small', field models: must be a list of model names",
    ),
    "a name Ollama refuses": (
        "l20x8",
        config(instances=seeds_with(**{"2": {"models": ["qwen3:0.6b", "team.x/coder"]}})),
        "host gpu1, instance 'solo', field models: 'team.x/coder' is not a model name: its namespace must be",
    ),
    "a cloud model": (
        "l20x8",
        config(instances=seeds_with(**{"2": {"models": ["gpt-oss:120b-cloud"]}})),
        "instance 'solo', field models: 'gpt-oss:120b-cloud' is a cloud model, which Ollama sends on to ollama.com",
    ),
    "one model spelled twice": (
        "l20x8",
        config(instances=seeds_with(**{"2": {"models": ["qwen3:0.6b", "library/Qwen3:0.6B"]}})),
        "instance 'solo', field models: 'library/Qwen3:0.6B' and 'qwen3:0.6b' are one model to Ollama",
    ),
    "fewer loaded models than pinned": (
        "l20x8",
        config(instances=seeds_with(**{"2": {"max_loaded_models": 2, "models": ["a:1b", "b:1b", "c:1b"]}})),
        "host gpu1, instance 'solo', field max_loaded_models: 2 is fewer than the 3 models the instance pins "
        "(a:1b, b:1b, c:1b), and Ollama would evict one to load another; set at least 3, or 0",
    ),
}


@pytest.mark.parametrize("case", REJECTIONS, ids=list(REJECTIONS))
def test_bad_plans_are_rejected_naming_host_instance_and_field(case):
    spec, cfg, message = REJECTIONS[case]
    with pytest.raises(AnsibleFilterError) as rejected:
        ollama_plan(gpus(spec), "gpu1", cfg)
    assert message in str(rejected.value)


def test_host_without_gpus_says_why_and_what_to_do():
    with pytest.raises(AnsibleFilterError) as rejected:
        ollama_plan([], "cpu1", config(strategy="per_gpu", discovery_reason="NVML: Driver Not Loaded"))
    assert "host cpu1: no GPU found (NVML: Driver Not Loaded); install the NVIDIA driver, or pin ollama_gpus" in str(
        rejected.value
    )


def test_plan_table_lists_every_instance_with_its_settings():
    from ollama_plan import ollama_plan_table

    plan = ollama_plan(gpus("l20x8"), "gpu1", config(instances=SEEDS))
    plan[0]["fit"] = [{"model": "llama3.1:8b", "status": "fits", "estimate": {"total": 10 * GIB}}]
    header, small, large, solo = ollama_plan_table(plan)
    assert header.split() == ["instance", "GPUs", "VRAM", "port", "parallel", "context", "models", "est.", "free"]
    assert small.split() == ["small", "0-1", "96.0", "11435", "4", "8192", "llama3.1:8b", "10.0", "76.4"]
    assert large.split()[:7] == ["large", "2-6", "239.9", "11436", "1", "131072", "llama3.3:70b"]
    assert large.split()[7] == "?" and solo.split()[6:] == ["-", "-", "43.2"]


def test_each_instance_may_open_only_its_own_gpus_device_nodes():
    """/dev/nvidiaN is the driver's minor number, which need not be the NVML index: the plan takes gpu_facts'."""
    l20 = gpus("l20x8")
    for gpu in l20:
        gpu["minor_number"] = 7 - gpu["index"]  # reversed, so an index would open the wrong GPU
    plan = {i["name"]: i["device_nodes"] for i in ollama_plan(l20, "gpu1", config(instances=SEEDS))}
    assert plan == {
        "small": ["/dev/nvidia6", "/dev/nvidia7"],
        "large": ["/dev/nvidia1", "/dev/nvidia2", "/dev/nvidia3", "/dev/nvidia4", "/dev/nvidia5"],
        "solo": ["/dev/nvidia0"],
    }
    # a MIG device is reached through its GPU's node; without a minor number nothing is guessed
    h100 = gpus("h100-mig")
    h100[0]["minor_number"] = 3
    assert {i["name"]: i["device_nodes"] for i in ollama_plan(h100, "h100", config())} == dict.fromkeys(
        ["mig0-0", "mig0-1", "mig0-2"], ["/dev/nvidia3"]
    )
    assert all(i["device_nodes"] == [] for i in ollama_plan(gpus("l20x8"), "gpu1", config(instances=SEEDS)))


def test_models_are_named_as_ollama_shows_them_whatever_the_spelling():
    """The plan, and so status, the gateway and the pulls, names a model as Ollama shows it (model_names.display):
    defaults and :local dropped, :latest added, the case kept (a store keeps the case of a first pull)."""
    pins = {"0": {"models": ["registry.ollama.ai/library/llama3.1:8b"]}, "2": {"models": ["library/Qwen3:0.6B:local"]}}
    plan = ollama_plan(gpus("l20x8"), "gpu1", config(instances=seeds_with(**pins)))
    assert [i["models"] for i in plan] == [["llama3.1:8b"], ["llama3.3:70b"], ["Qwen3:0.6B"]]


def test_max_loaded_models_follows_the_pinned_models():
    """OLLAMA_MAX_LOADED_MODELS 0 is 3 per GPU (server/sched.go defaultModelsPerGPU): one GPU pinning four models
    would always have one evicted. The plan raises it to the pinned models where Ollama's default is fewer."""
    four = ["a:1b", "b:1b", "c:1b", "d:1b"]
    plan = ollama_plan(
        gpus("l20x8"),
        "gpu1",
        config(
            instances=[{"name": "one", "gpus": [0], "models": four}, {"name": "two", "gpus": [1, 2], "models": four}]
        ),
    )
    assert [(i["settings"]["max_loaded_models"], i["env"]["OLLAMA_MAX_LOADED_MODELS"]) for i in plan] == [
        (4, "4"),  # one GPU: Ollama's 3 are fewer
        (0, "0"),  # two GPUs: Ollama's 6 are enough
    ]


def test_keep_alive_left_empty_pins_for_good_where_models_are_pinned():
    """A pinned model Ollama loads again without a keep_alive (an eviction, a client's reload) takes
    OLLAMA_KEEP_ALIVE (server/sched.go Scheduler.load): -1 keeps it pinned; an instance that pins nothing keeps
    Ollama's 5m. A value the inventory gives is kept."""
    settings = dict(SETTINGS, keep_alive="")
    plan = ollama_plan(gpus("l20x8"), "gpu1", config(settings=settings, instances=SEEDS))
    assert [(i["name"], i["env"]["OLLAMA_KEEP_ALIVE"]) for i in plan] == [
        ("small", "-1"),
        ("large", "-1"),
        ("solo", "5m"),  # pins nothing
    ]
    given = ollama_plan(gpus("l20x8"), "gpu1", config(settings=dict(settings, keep_alive="10m"), instances=SEEDS))
    assert {i["env"]["OLLAMA_KEEP_ALIVE"] for i in given} == {"10m"}
