"""One rule in two places: the plan's check of an instance's pinned models together (plugins/filter/ollama_vram.py
together) foresees what the stand-in's scheduler, which follows Ollama v0.33's server/sched.go, does when the
warm-up loads them in the plan's order: no eviction where the plan says they fit, and the first eviction at the
model the plan names."""

import json
from pathlib import Path

import pytest
import yaml
from conftest import SPECS
from ollama_vram import ollama_fit_check

CATALOGUE = yaml.safe_load(
    (Path(__file__).resolve().parents[2] / "roles/ollama/vars/main/known_models.yml").read_text()
)["__ollama_known_models"]
L20 = json.loads((SPECS / "l20x8.json").read_text())["gpus"]

# (GPUs of an 8x L20 host, num_parallel, context, pinned models in warm-up order)
LAYOUTS = {
    "fit together on two GPUs": (2, 1, 4096, ["llama3.1:8b", "qwen2.5:32b", "llama3.3:70b"]),
    "beyond 80 % on one GPU": (1, 1, 4096, ["llama3.1:8b", "llama3.3:70b"]),
    "one by one, not together, one GPU": (1, 2, 8192, ["llama3.1:8b", "gemma3:27b", "qwen2.5:32b"]),
    "one by one, not together, two GPUs": (2, 1, 65536, ["qwen2.5:32b", "llama3.3:70b"]),
    # the plan refuses these two for the headroom it keeps; Ollama evicts nothing
    "the same two, the other way round": (2, 1, 65536, ["llama3.3:70b", "qwen2.5:32b"]),
    "within 80 % but past the headroom": (2, 1, 49152, ["qwen2.5:32b", "llama3.3:70b"]),
}
# Not gemma3 first on two GPUs: the stand-in sizes its KV cache for every layer, where llama.cpp keeps only its
# global layers' whole (sliding window) and the plan's estimate does too, so the stand-in evicts where Ollama,
# which counts what a runner really holds (updateFreeSpace), would not.


def planned(gpus, num_parallel, context, models):
    instance = {
        "host": "gpu1",
        "name": "b",
        "gpus": [{"index": i, "memory_total": g["memory_total"]} for i, g in enumerate(L20[:gpus])],
        "gpu_label": "GPU 0" if gpus == 1 else f"GPUs 0-{gpus - 1}",
        "vram_total": sum(g["memory_total"] for g in L20[:gpus]),
        "settings": {"num_parallel": num_parallel, "context_length": context, "kv_cache_type": "f16"},
        "env": {},
        "models": models,
    }
    (checked,) = ollama_fit_check([instance], CATALOGUE, policy="warn")
    return checked["together"]


@pytest.mark.parametrize("layout", LAYOUTS)
def test_the_plan_foresees_the_schedulers_first_eviction(standin, layout):
    gpus, num_parallel, context, models = LAYOUTS[layout]
    foreseen = (planned(gpus, num_parallel, context, models)["evicts"] or {}).get("model")
    server = standin(
        CUDA_VISIBLE_DEVICES=",".join(str(i) for i in range(gpus)),
        OLLAMA_NUM_PARALLEL=str(num_parallel),
        OLLAMA_CONTEXT_LENGTH=str(context),
    )
    server.pull(*models)
    seen = None
    for model in models:
        before = {m["name"] for m in server.get("/api/ps")["models"]}
        server.load(model, keep_alive=-1)
        after = {m["name"] for m in server.get("/api/ps")["models"]}
        if seen is None and before - after:
            seen = model
    assert seen == foreseen
