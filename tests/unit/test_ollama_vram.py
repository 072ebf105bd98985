"""The VRAM estimator against allocations published in issue trackers, and the fit check.

Each reference names where the numbers were published; the tolerance each holds is in its assert.
"""

from pathlib import Path

import pytest
import yaml
from ansible.errors import AnsibleFilterError
from ollama_vram import ollama_fit_check, ollama_vram_estimate

MIB, GIB = 2**20, 2**30
LLAMA31_8B = {
    "general.architecture": "llama",
    "llama.block_count": 32,
    "llama.embedding_length": 4096,
    "llama.attention.head_count": 32,
    "llama.attention.head_count_kv": 8,
    "llama.context_length": 131072,
    "llama.vocab_size": 128256,
}
LLAMA33_70B = {
    "general.architecture": "llama",
    "llama.block_count": 80,
    "llama.embedding_length": 8192,
    "llama.attention.head_count": 64,
    "llama.attention.head_count_kv": 8,
    "llama.context_length": 131072,
    "llama.vocab_size": 128256,
}
GEMMA3_27B = {
    "general.architecture": "gemma3",
    "gemma3.block_count": 62,
    "gemma3.embedding_length": 5376,
    "gemma3.attention.head_count": 32,
    "gemma3.attention.head_count_kv": 16,
    "gemma3.attention.key_length": 128,
    "gemma3.attention.value_length": 128,
    "gemma3.attention.sliding_window": 1024,
    "gemma3.context_length": 131072,
}


def within(value, expected, tolerance):
    return abs(value - expected) <= tolerance * expected


def test_llama31_8b_32k_kv_cache_f16_and_q4_0__ollama_pr_6276():
    # ollama/ollama#6276 (K/V cache quantisation PR): "loading llama3.1 8b with a 32K context drops vRAM
    # usage by cache from 4GB to 1.1GB" (f16 → q4_0).
    f16 = ollama_vram_estimate(LLAMA31_8B, 4920753328, num_ctx=32768)
    q4 = ollama_vram_estimate(LLAMA31_8B, 4920753328, num_ctx=32768, kv_cache_type="q4_0")
    assert within(f16["kv_cache"], 4 * GIB, 0.01)
    assert within(q4["kv_cache"], 1.1 * GIB, 0.03)


def test_kv_cells_are_num_ctx_times_parallel__ollama_issue_9362():
    # ollama/ollama#9362, Ollama's own log: n_ctx = 8192, n_ctx_per_seq = 2048 (4 parallel), kv_size = 8192,
    # n_layer = 28, n_embd_k_gqa = n_embd_v_gqa = 256 (2 KV heads × 128), type f16, n_ctx_train 131072.
    # llama.cpp allocates kv_size × n_layer × (256 + 256) × 2 bytes = 224 MiB for that.
    info = {
        "general.architecture": "qwen2",
        "qwen2.block_count": 28,
        "qwen2.embedding_length": 1536,
        "qwen2.attention.head_count": 12,
        "qwen2.attention.head_count_kv": 2,
        "qwen2.attention.key_length": 128,
        "qwen2.attention.value_length": 128,
        "qwen2.context_length": 131072,
    }
    est = ollama_vram_estimate(info, 1117320736, num_ctx=2048, num_parallel=4, flash_attention=False)
    assert est["kv_cache"] == 224 * MIB


def test_mistral_class_without_flash_attention__llama_cpp_server_log():
    # fedora-copr/logdetective#106 (a llama.cpp server log, not Ollama's tracker): 32 layers, 8 KV heads,
    # flash_attn = 0, n_ubatch 512. KV 256.00 MiB at n_ctx 2048 and 4096.00 MiB at 32768; compute buffer
    # 2144.00 MiB at 32768.
    info = {
        "general.architecture": "llama",
        "llama.block_count": 32,
        "llama.embedding_length": 4096,
        "llama.attention.head_count": 32,
        "llama.attention.head_count_kv": 8,
        "llama.context_length": 32768,
        "llama.vocab_size": 32768,
    }
    small = ollama_vram_estimate(info, 4_400_000_000, num_ctx=2048, flash_attention=False)
    large = ollama_vram_estimate(info, 4_400_000_000, num_ctx=32768, flash_attention=False)
    assert small["kv_cache"] == 256 * MIB and large["kv_cache"] == 4096 * MIB
    assert within(large["compute"], 2144 * MIB, 0.05)
    # at small contexts the compute estimate errs high, by less than 100 MiB (documented)
    assert 164 * MIB <= small["compute"] <= 164 * MIB + 100 * MIB


def test_quantised_kv_ratios__llama_cpp_pr_21551():
    # ggml-org/llama.cpp#21551: the same cache is 1040.00 MiB f16, 552.50 MiB q8_0, 292.50 MiB q4_0.
    f16 = ollama_vram_estimate(LLAMA31_8B, 1, num_ctx=8320)["kv_cache"]
    q8 = ollama_vram_estimate(LLAMA31_8B, 1, num_ctx=8320, kv_cache_type="q8_0")["kv_cache"]
    q4 = ollama_vram_estimate(LLAMA31_8B, 1, num_ctx=8320, kv_cache_type="q4_0")["kv_cache"]
    assert (f16, q8, q4) == (1040 * MIB, int(552.5 * MIB), int(292.5 * MIB))


def test_the_issues_own_example_llama33_70b_on_five_l20s():
    est = ollama_vram_estimate(LLAMA33_70B, 42520413916, num_ctx=131072, num_parallel=4, gpu_count=5)
    assert round(est["weights"] / GIB, 1) == 39.6
    assert round(est["kv_cache"] / GIB, 1) == 160.0
    assert round(est["overhead"] / GIB, 1) == 5.0
    assert est["total"] == sum(est[k] for k in ("weights", "kv_cache", "compute", "overhead"))


def test_quantised_kv_needs_flash_attention():
    with_fa = ollama_vram_estimate(LLAMA31_8B, 1, num_ctx=8192, kv_cache_type="q8_0")
    without = ollama_vram_estimate(LLAMA31_8B, 1, num_ctx=8192, kv_cache_type="q8_0", flash_attention=False)
    assert without["kv_cache"] == 1024 * MIB and with_fa["kv_cache"] < 550 * MIB
    assert without["compute"] > with_fa["compute"]


def test_context_is_capped_at_the_training_context():
    capped = ollama_vram_estimate(LLAMA31_8B, 1, num_ctx=262144)
    assert capped["kv_cache"] == ollama_vram_estimate(LLAMA31_8B, 1, num_ctx=131072)["kv_cache"]


def test_sliding_window_layers_hold_only_the_window_and_stay_f16():
    est = ollama_vram_estimate(GEMMA3_27B, 17396936941, num_ctx=32768, num_parallel=4)
    full_layers, swa_layers = 10, 52  # every 6th of 62 layers is global
    per_cell = 16 * 256 * 2
    swa_cells = 4608  # pad256(1024 × 4 + 512)
    assert est["kv_cache"] == 131072 * full_layers * per_cell + swa_cells * swa_layers * per_cell
    q8 = ollama_vram_estimate(GEMMA3_27B, 17396936941, num_ctx=32768, num_parallel=4, kv_cache_type="q8_0")
    assert q8["kv_cache"] == int(131072 * full_layers * 16 * 256 * 1.0625) + swa_cells * swa_layers * per_cell


@pytest.mark.parametrize(
    "args, message",
    [
        (({}, 1), "input must be /api/show's model_info"),
        ((LLAMA31_8B, 1, 4096, 0), "num_parallel must be an integer ≥ 1, got 0"),
        ((LLAMA31_8B, 1, 4096, 1, "q5_1"), "kv_cache_type 'q5_1'; valid: f16, q8_0, q4_0"),
        (({"general.architecture": "llama"}, 1), "model_info lacks llama.block_count"),
    ],
)
def test_bad_estimator_input(args, message):
    with pytest.raises(AnsibleFilterError, match=message):
        ollama_vram_estimate(*args)


def instance(name="large", gpus=5, num_parallel=4, context_length=131072, models=("llama3.3:70b",)):
    return {
        "host": "gpu1",
        "name": name,
        "gpus": [{"index": i} for i in range(2, 2 + gpus)],
        "gpu_label": f"GPUs 2-{1 + gpus}",
        "vram_total": gpus * 49140 * MIB,
        "settings": {
            "num_parallel": num_parallel,
            "context_length": context_length,
            "kv_cache_type": "f16",
            "flash_attention": True,
        },
        "env": {"OLLAMA_NUM_PARALLEL": str(num_parallel), "OLLAMA_CONTEXT_LENGTH": str(context_length)},
        "models": list(models),
    }


MODELS = {"llama3.3:70b": {"model_info": LLAMA33_70B, "size": 42520413916}}


def test_fit_check_message_reads_like_the_issue():
    (checked,) = ollama_fit_check([instance()], MODELS)
    (fit,) = checked["fit"]
    assert fit["status"] == "fits"
    assert fit["message"].startswith("instance 'large' on gpu1: llama3.3:70b at num_ctx 131072 × parallel 4 needs 20")
    assert "(weights 39.6, KV 160.0, compute " in fit["message"]
    assert fit["message"].endswith("reserve 5.0) but GPUs 2-6 hold 239.9 GiB − 10%: fits")


def test_fit_check_fails_by_default_naming_every_misfit():
    with pytest.raises(AnsibleFilterError) as failed:
        ollama_fit_check([instance(gpus=2)], MODELS)
    assert "instance 'large' on gpu1: llama3.3:70b at num_ctx 131072 × parallel 4" in str(failed.value)
    assert "GPUs 2-3 hold 96.0 GiB − 10%: does not fit by" in str(failed.value)


def test_fit_check_warn_reports_without_failing():
    (checked,) = ollama_fit_check([instance(gpus=2)], MODELS, policy="warn")
    assert checked["fit"][0]["status"] == "misfit"


def test_fit_check_adjust_lowers_parallel_then_context():
    (checked,) = ollama_fit_check([instance(gpus=2)], MODELS, policy="adjust")
    settings = checked["settings"]
    assert checked["fit"][0]["status"] == "adjusted"
    assert settings["num_parallel"] == 1 and settings["context_length"] == 131072
    assert checked["env"]["OLLAMA_NUM_PARALLEL"] == "1"
    assert checked["fit"][0]["message"].endswith("; adjusted: num_parallel 4 → 1")
    (one_gpu,) = ollama_fit_check([instance(gpus=1)], MODELS, policy="adjust")
    assert one_gpu["settings"]["num_parallel"] == 1 and one_gpu["settings"]["context_length"] < 131072
    assert one_gpu["fit"][0]["estimate"]["total"] <= 0.9 * one_gpu["vram_total"]
    assert "; adjusted: num_parallel 4 → 1, context 131072 → " in one_gpu["fit"][0]["message"]


def test_fit_check_adjust_fails_where_no_setting_fits():
    """42 GB of weights on a 24 GB GPU fit at no num_parallel and context: run, it would spill to the CPU."""
    small = dict(instance(gpus=1), vram_total=24 * 1024 * MIB)
    with pytest.raises(AnsibleFilterError, match=r"adjust found no num_parallel and context(.|\n)*llama3.3:70b"):
        ollama_fit_check([small], MODELS, policy="adjust")
    (warned,) = ollama_fit_check([small], MODELS, policy="warn")  # warn still deploys it, saying so
    assert warned["fit"][0]["status"] == "misfit"


def test_fit_check_unknown_models_and_bad_policy():
    (checked,) = ollama_fit_check([instance(models=("mystery:1b",))], MODELS)
    assert checked["fit"] == [
        {
            "model": "mystery:1b",
            "status": "unknown",
            "source": None,
            "message": "mystery:1b: not known yet (pull it first)",
        }
    ]
    with pytest.raises(AnsibleFilterError, match="policy 'maybe'; valid: fail, warn, adjust"):
        ollama_fit_check([instance()], MODELS, policy="maybe")
    with pytest.raises(AnsibleFilterError, match=r"headroom must be a fraction in \[0, 1\), got 10"):
        ollama_fit_check([instance()], MODELS, headroom=10)


def test_context_zero_means_ollamas_vram_tier():
    (checked,) = ollama_fit_check([instance(context_length=0, num_parallel=1)], MODELS, policy="warn")
    # five L20s hold ≥ 47 GiB: Ollama would pick 262144, capped at llama3.3's 131072
    assert "at num_ctx 262144 × parallel 1" in checked["fit"][0]["message"]


NOMIC = {
    "general.architecture": "nomic-bert",
    "nomic-bert.attention.head_count": 12,
    "nomic-bert.block_count": 12,
    "nomic-bert.context_length": 2048,
    "nomic-bert.embedding_length": 768,
}


def test_fit_check_gives_each_model_the_slots_and_context_ollama_will():
    """server/sched.go Scheduler.load: no completion capability, or a single-slot family → parallel 1; the
    context /api/ps shows is the instance's, capped at the model's training context."""
    vl = {k.replace("llama.", "qwen3vl."): v for k, v in LLAMA33_70B.items()} | {"general.architecture": "qwen3vl"}
    models = {
        **MODELS,
        "nomic-embed-text:latest": {"model_info": NOMIC, "size": 274302450, "capabilities": ["embedding"]},
        "vl:latest": {"model_info": vl, "size": 2**30, "source": "ollama"},
    }
    pinned = instance(models=("llama3.3:70b", "nomic-embed-text:latest", "vl:latest"), num_parallel=4)
    # each fits; all three at once do not (test_pinned_models_that_fit_one_by_one_but_not_together)
    (checked,) = ollama_fit_check([pinned], models, policy="warn")
    seen = {f["model"]: (f["slots"], f["context"], f["source"]) for f in checked["fit"]}
    assert seen == {
        "llama3.3:70b": (4, 131072, "catalogue"),
        "nomic-embed-text:latest": (1, 2048, "catalogue"),
        "vl:latest": (1, 131072, "ollama"),
    }
    assert "nomic-embed-text:latest at num_ctx 131072 × parallel 1 needs" in checked["fit"][1]["message"]
    # the KV cache is sized for the one slot Ollama gives it, not for num_parallel 4
    assert checked["fit"][2]["estimate"] == ollama_vram_estimate(vl, 2**30, num_ctx=131072, num_parallel=1, gpu_count=5)


def test_adjust_does_not_lower_parallel_for_a_single_slot_model():
    """Fewer slots than Ollama gives a single-slot model save nothing: adjust lowers the context instead and
    leaves the instance's num_parallel (which its other models may use) alone."""
    vl = {k.replace("llama.", "qwen3vl."): v for k, v in LLAMA33_70B.items()} | {"general.architecture": "qwen3vl"}
    models = {"vl:latest": {"model_info": vl, "size": 4 * 2**30}}
    (checked,) = ollama_fit_check([instance(gpus=1, models=("vl:latest",))], models, policy="adjust")
    assert checked["fit"][0]["status"] == "adjusted"
    assert checked["settings"]["num_parallel"] == 4 and checked["settings"]["context_length"] < 131072
    assert checked["fit"][0]["context"] == checked["settings"]["context_length"]


def test_an_adjustment_for_a_later_model_reaches_the_earlier_ones():
    """The instance runs one num_parallel and context for all its models: after adjust lowered them for
    llama3.3:70b, the small model checked before it gets the same slots and context (what nginx and the
    proof use)."""
    small = {"model_info": {k.replace("llama.", "qwen3."): v for k, v in LLAMA33_70B.items()}, "size": 2**30}
    small["model_info"]["general.architecture"] = "qwen3"
    models = {**MODELS, "qwen3:0.6b": small}
    (checked,) = ollama_fit_check([instance(gpus=2, models=("qwen3:0.6b", "llama3.3:70b"))], models, policy="adjust")
    parallel, context = checked["settings"]["num_parallel"], checked["settings"]["context_length"]
    assert (parallel, context) != (4, 131072), "the 70B needed an adjustment on 2 GPUs"
    assert [(f["slots"], f["context"]) for f in checked["fit"]] == [(parallel, context)] * 2


# ------------------------------------------------------------------ an instance's pinned models, loaded at once

# GGUF metadata of the Ollama library's models (llama, gemma3, qwen2, qwen3, gptoss, nomic-bert), as plan.yml
# knows them before a pull: roles/ollama/vars/main/known_models.yml.
CATALOGUE = yaml.safe_load(
    (Path(__file__).resolve().parents[2] / "roles/ollama/vars/main/known_models.yml").read_text()
)["__ollama_known_models"]
H200 = 140.4  # GiB, as NVML reports an NVIDIA H200 (tests/device fixtures)
L40S = 44.5


def on(gpus, gib, models, num_parallel=1, context_length=0):
    """An instance of GPUS GPUs of GIB GiB each pinning MODELS (in warm-up order)."""
    return {
        **instance(gpus=gpus, num_parallel=num_parallel, context_length=context_length, models=models),
        "gpus": [{"index": i, "memory_total": int(gib * GIB)} for i in range(gpus)],
        "gpu_label": f"GPU {0}" if gpus == 1 else f"GPUs 0-{gpus - 1}",
        "vram_total": int(gpus * gib * GIB),
    }


def test_pinned_models_that_fit_together():
    pinned = ("llama3.1:8b", "qwen3:0.6b", "nomic-embed-text:latest", "gpt-oss:20b")
    (checked,) = ollama_fit_check([on(1, H200, pinned, num_parallel=4, context_length=8192)], CATALOGUE)
    together = checked["together"]
    assert together["status"] == "fits" and together["evicts"] is None
    shares = {s["model"]: s["bytes"] for s in together["shares"]}
    assert list(shares) == list(pinned)
    # every model's allocation (its estimate less the fit margin) and one margin for the GPU
    estimates = {f["model"]: f["estimate"] for f in checked["fit"]}
    assert shares == {m: e["total"] - e["overhead"] for m, e in estimates.items()}
    assert together["total"] == sum(shares.values()) + GIB
    assert together["message"].endswith(f"GPU 0 holds {H200} GiB − 10% = 126.4 GiB: fits")


def test_pinned_models_that_fit_one_by_one_but_not_together_on_one_gpu():
    """The issue's H200: each fits alone (the largest needs 80 GiB of 126.4), the three do not, and Ollama
    predicts gemma3:27b at 97.6 GiB (llm/llama_server.go PredictServerVRAM: no sliding window, f16) against the
    60.4 GiB the 70B leaves, so it would evict to load it."""
    pinned = ("llama3.3:70b", "gemma3:27b", "qwen2.5:32b")
    (checked,) = ollama_fit_check([on(1, H200, pinned)], CATALOGUE, policy="warn")
    assert [f["status"] for f in checked["fit"]] == ["fits"] * 3
    together = checked["together"]
    assert together["status"] == "misfit" and together["evicts"]["model"] == "gemma3:27b"
    assert together["message"] == (
        "instance 'large' on gpu1: its 3 pinned models loaded together need 135.0 GiB (llama3.3:70b 80.0, "
        "gemma3:27b 27.2, qwen2.5:32b 26.9, reserve 1.0) and GPU 0 holds 140.4 GiB − 10% = 126.4 GiB; Ollama "
        "would not load gemma3:27b beside the models before it: it predicts 97.6 GiB, over 80 % of the 60.4 GiB "
        "they leave, and evicts one (server/sched.go Scheduler.load, findRunnerToUnload): does not fit together "
        "(pin fewer models on this instance, give it more GPUs, or lower num_parallel or context_length; "
        "ollama_fit_policy: adjust lowers them)"
    )
    with pytest.raises(AnsibleFilterError, match="its 3 pinned models loaded together need 135.0 GiB"):
        ollama_fit_check([on(1, H200, pinned)], CATALOGUE)


def test_pinned_models_that_fit_one_by_one_but_not_together_on_two_gpus():
    """Two L40S: the 70B spreads over both; 71.9 GiB of 80.1 would hold both models, but Ollama's prediction
    for gemma3:27b (36.5 GiB) is over 80 % of the 38.9 GiB the 70B leaves: it would evict the 70B."""
    (checked,) = ollama_fit_check(
        [on(2, L40S, ("llama3.3:70b", "gemma3:27b"), context_length=32768)], CATALOGUE, policy="warn"
    )
    together = checked["together"]
    assert together["status"] == "misfit" and together["total"] <= together["capacity"]
    assert [s["gpus"] for s in together["shares"]] == [[0, 1], [0, 1]]
    assert "it predicts 36.5 GiB, over 80 % of the 38.9 GiB they leave" in together["message"]
    # loaded first, gemma3:27b meets no check (nothing to evict), and the 70B's 49.6 GiB fits in 80 % of the
    # 69 GiB it leaves: the warm-up's order is the plan's, so the order of models matters
    (swapped,) = ollama_fit_check([on(2, L40S, ("gemma3:27b", "llama3.3:70b"), context_length=32768)], CATALOGUE)
    assert swapped["together"]["status"] == "fits"
    # a model within 80 % of one GPU goes to the GPU with the most free memory (bestSingleGPUFit)
    (small,) = ollama_fit_check([on(2, L40S, ("llama3.1:8b", "qwen3:0.6b"), context_length=8192)], CATALOGUE)
    assert [s["gpus"] for s in small["together"]["shares"]] == [[0], [1]]


def test_adjust_brings_pinned_models_together_and_every_model_follows():
    pinned = ("llama3.3:70b", "gemma3:27b", "qwen2.5:32b")
    (checked,) = ollama_fit_check([on(1, H200, pinned)], CATALOGUE, policy="adjust")
    together = checked["together"]
    assert together["status"] == "adjusted" and together["message"].endswith("; adjusted: context 262144 → 65536")
    assert checked["settings"]["context_length"] == 65536 and checked["env"]["OLLAMA_CONTEXT_LENGTH"] == "65536"
    seen = {f["model"]: (f["status"], f["context"], f["slots"]) for f in checked["fit"]}
    assert seen == {
        "llama3.3:70b": ("adjusted", 65536, 1),
        "gemma3:27b": ("adjusted", 65536, 1),
        "qwen2.5:32b": ("adjusted", 32768, 1),  # its training context
    }
    shares = {s["model"]: s["bytes"] for s in together["shares"]}
    assert shares == {f["model"]: f["estimate"]["total"] - f["estimate"]["overhead"] for f in checked["fit"]}
    assert all("at num_ctx 65536 × parallel 1" in f["message"] for f in checked["fit"])


def test_one_model_alone_has_no_together():
    (checked,) = ollama_fit_check([on(1, H200, ("llama3.3:70b",))], CATALOGUE)
    assert "together" not in checked
