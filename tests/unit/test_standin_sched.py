"""The stand-in's scheduler holds models in VRAM as Ollama v0.33.0-rc2's does (server/sched.go): with models
loaded, the next loads beside them only if its prediction fits in 80 % of the memory they leave; otherwise the
runner findRunnerToUnload picks is expired first, keep_alive -1 or not; at most OLLAMA_MAX_LOADED_MODELS."""

import json
from pathlib import Path

import pytest

GIB = 1024**3
# one L20 (48 GiB) of tests/gpu_sim/specs/l20x8.json, every model at a context of 4096
ONE_GPU = {"CUDA_VISIBLE_DEVICES": "0", "OLLAMA_CONTEXT_LENGTH": "4096"}
TWO_GPUS = {"CUDA_VISIBLE_DEVICES": "0,1", "OLLAMA_CONTEXT_LENGTH": "4096"}


def loaded(server) -> dict:
    return {m["name"]: m for m in server.get("/standin/ps")["models"]}


def evictions(server) -> list[tuple[str, str]]:
    """(evicted, the model whose load evicted it), from the log lines the scheduler writes."""
    found = []
    for line in server.log.read_text().splitlines():
        if 'msg="resetting model to expire immediately to make room"' in line:
            fields = dict(f.split("=", 1) for f in line.split() if "=" in f and not f.startswith("msg="))
            found.append((fields["model"], fields["loading"]))
    return found


def test_models_that_fit_together_stay_loaded_and_the_scheduler_counts_what_they_hold(standin):
    server = standin(**ONE_GPU)
    server.pull("qwen3:0.6b", "llama3.1:8b")
    server.load("qwen3:0.6b", keep_alive=-1)
    server.load("llama3.1:8b", keep_alive=-1)
    state = server.get("/standin/ps")
    assert sorted(loaded(server)) == ["llama3.1:8b", "qwen3:0.6b"]
    ps = server.get("/api/ps")["models"]
    assert all(m["size_vram"] == m["size"] for m in ps)  # both whole in VRAM
    (gpu,) = state["gpus"]
    spec = json.loads(Path(server.env["NVML_SIM_SPEC"]).read_text())["gpus"][0]
    # server/sched.go updateFreeSpace: what the device has free, less what the loaded runners hold on it
    assert state["free_memory"][gpu] == spec["memory_total"] - spec["memory_used"] - sum(m["size_vram"] for m in ps)
    assert evictions(server) == []


def test_a_model_beyond_80_percent_of_the_free_memory_evicts_a_loaded_one_even_where_it_would_fit(standin):
    # llama3.1:8b leaves about 42.7 GiB free; llama3.3:70b's prediction (40.9 GiB: 39.6 of weights, 1.3 of KV
    # cache) is above 80 % of that, so Ollama evicts though the 70B's 41.1 GiB would fit beside llama.cpp's
    # 1 GiB margin (server/sched.go Scheduler.load: "Use 80% of free memory as threshold to leave headroom").
    server = standin(**ONE_GPU)
    server.pull("llama3.1:8b", "llama3.3:70b")
    server.load("llama3.1:8b", keep_alive=-1)
    free = sum(server.get("/standin/ps")["free_memory"].values())
    assert 0.8 * free < 40.9 * GIB < free - GIB
    server.load("llama3.3:70b", keep_alive=-1)
    assert list(loaded(server)) == ["llama3.3:70b"]
    assert evictions(server) == [("llama3.1:8b", "llama3.3:70b")]


def test_a_pinned_model_is_evicted_by_one_that_does_not_fit_beside_it(standin):
    # keep_alive -1 does not protect a runner: findRunnerToUnload picks from every loaded one
    server = standin(**ONE_GPU)
    server.pull("llama3.3:70b", "qwen2.5:32b")
    server.load("llama3.3:70b", keep_alive=-1)
    server.load("qwen2.5:32b", keep_alive=-1)
    assert list(loaded(server)) == ["qwen2.5:32b"]
    assert evictions(server) == [("llama3.3:70b", "qwen2.5:32b")]
    (model,) = server.get("/api/ps")["models"]
    assert model["size_vram"] == model["size"]


def test_on_two_gpus_a_model_goes_to_the_freest_gpu_whose_80_percent_holds_it_else_over_both(standin):
    # server/sched.go selectLlamaServerPlacement, bestSingleGPUFit
    server = standin(**TWO_GPUS)
    server.pull("llama3.1:8b", "qwen2.5:32b", "llama3.3:70b")
    first, second = server.get("/standin/ps")["gpus"]
    server.load("llama3.1:8b", keep_alive=-1)
    server.load("qwen2.5:32b", keep_alive=-1)
    models = loaded(server)
    assert models["llama3.1:8b"]["gpus"] == [first]  # equal free memory: the first
    assert models["qwen2.5:32b"]["gpus"] == [second]  # the freer one
    # 40.9 GiB fits in 80 % of neither GPU's free memory, but in 80 % of both together
    server.load("llama3.3:70b", keep_alive=-1)
    models = loaded(server)
    assert sorted(models) == ["llama3.1:8b", "llama3.3:70b", "qwen2.5:32b"]
    assert models["llama3.3:70b"]["gpus"] == [first, second]
    assert all(m["size_vram"] == m["size"] for m in server.get("/api/ps")["models"])


def test_on_two_gpus_models_that_fit_one_by_one_but_not_together_evict_the_shortest_keep_alive(standin):
    # findRunnerToUnload sorts by keep_alive (ByDurationAndName), so the model kept 30 minutes goes before the
    # one kept for good, although that one loaded first
    server = standin(**TWO_GPUS)
    # (llama3.1:70b loaded first, and its path, findRunnerToUnload's second key, sorts first)
    server.pull("llama3.3:70b", "llama3.1:70b", "qwen2.5:32b")
    server.load("llama3.1:70b", keep_alive=-1)
    server.load("llama3.3:70b", keep_alive="30m")
    assert sorted(loaded(server)) == ["llama3.1:70b", "llama3.3:70b"]
    server.load("qwen2.5:32b", keep_alive=-1)
    assert sorted(loaded(server)) == ["llama3.1:70b", "qwen2.5:32b"]
    assert evictions(server) == [("llama3.3:70b", "qwen2.5:32b")]


def test_sched_spread_puts_even_a_small_model_on_every_gpu(standin):
    server = standin(OLLAMA_SCHED_SPREAD="1", **TWO_GPUS)
    server.pull("qwen3:0.6b")
    server.load("qwen3:0.6b")
    (model,) = loaded(server).values()
    assert model["gpus"] == server.get("/standin/ps")["gpus"]


@pytest.mark.parametrize(("max_loaded", "kept"), [(None, 3), ("4", 4)])
def test_max_loaded_models_defaults_to_three_per_gpu(standin, max_loaded, kept):
    # server/sched.go processPending: defaultModelsPerGPU (3) x GPUs when OLLAMA_MAX_LOADED_MODELS is unset
    env = dict(ONE_GPU, **({"OLLAMA_MAX_LOADED_MODELS": max_loaded} if max_loaded else {}))
    server = standin(**env)
    models = ["qwen3:0.6b", "llama3.1:8b", "gpt-oss:20b", "gemma3:27b"]  # 39 GiB together
    server.pull(*models)
    for model in models:
        server.load(model, keep_alive=-1)
    assert len(loaded(server)) == kept
    assert len(evictions(server)) == len(models) - kept
