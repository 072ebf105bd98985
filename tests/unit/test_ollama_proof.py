"""ollama_plan_misses: the proof site.yml runs after the warm-up, against /api/ps as Ollama 0.33 answers it."""

import pytest
from ollama_proof import ollama_models_to_warm, ollama_plan_misses

GIB = 1024**3


def planned(models=("llama3.3:70b",), context=8192):
    return {
        "host": "gpu1",
        "name": "large",
        "gpu_label": "GPUs 2-6",
        "models": list(models),
        "fit": [
            {"model": m, "status": "fits", "context": context, "estimate": {"total": 50 * GIB}, "slots": 4}
            for m in models
        ],
    }


def ps(*models, status=200):
    return {"status": status, "json": {"models": list(models)}}


def loaded(name="llama3.3:70b", size=45 * GIB, size_vram=45 * GIB, context=8192):
    # exactly the fields of server/routes.go PsHandler (api.ProcessModelResponse)
    return {
        "name": name,
        "model": name,
        "size": size,
        "digest": "0" * 64,
        "details": {},
        "expires_at": "2318-01-01T00:00:00Z",
        "size_vram": size_vram,
        "context_length": context,
    }


def test_an_instance_holding_its_models_as_planned_passes():
    assert ollama_plan_misses([dict(ps(loaded()), __instance=planned())]) == []


def test_a_spilled_model_names_instance_model_and_gib():
    (message,) = ollama_plan_misses([dict(ps(loaded(size_vram=40 * GIB)), __instance=planned())])
    assert message.startswith(
        "host gpu1, instance 'large' (GPUs 2-6): llama3.3:70b has 40.0 of 45.0 GiB in VRAM (11 % on the CPU)."
    )
    for cause in ("/dev/nvidia*", "nvidia-uvm", "nvidia-smi --query-compute-apps", "llama3.3:70b 50.0 GiB"):
        assert cause in message


@pytest.mark.parametrize(
    ("answer", "expected"),
    [
        (ps(loaded(context=4096)), "llama3.3:70b runs at context 4096, planned 8192"),
        (ps(), "llama3.3:70b is not loaded"),
        ({"status": -1, "msg": "Connection refused"}, "/api/ps did not answer (Connection refused)"),
    ],
)
def test_other_misses_are_named(answer, expected):
    (message,) = ollama_plan_misses([dict(answer, __instance=planned())])
    assert expected in message


def test_models_the_fit_check_could_not_judge_promise_nothing():
    unknown = dict(planned(), fit=[{"model": "mystery:1b", "status": "unknown", "source": None, "message": "?"}])
    assert ollama_plan_misses([dict(ps(), __instance=unknown)]) == []


def test_names_without_a_tag_match_latest():
    instance = planned(models=("nomic-embed-text",), context=2048)
    assert ollama_plan_misses([dict(ps(loaded("nomic-embed-text:latest", context=2048)), __instance=instance)]) == []


def test_a_model_let_through_as_a_misfit_promises_nothing():
    """ollama_fit_policy warn deploys a model known not to fit: it spills, and that is not a failed deploy."""
    warned = dict(planned(), fit=[dict(planned()["fit"][0], status="misfit")])
    assert ollama_plan_misses([dict(ps(loaded(size_vram=10 * GIB)), __instance=warned)]) == []


def test_warm_up_reloads_what_a_client_reloaded_at_another_context():
    from ollama_proof import ollama_models_to_warm

    instance = dict(planned(models=("llama3.3:70b", "qwen3:0.6b")), models=["llama3.3:70b", "qwen3:0.6b"])
    assert ollama_models_to_warm(instance, [loaded(context=8192)]) == ["qwen3:0.6b"]
    assert ollama_models_to_warm(instance, [loaded(context=2048), loaded("qwen3:0.6b")]) == ["llama3.3:70b"]
    unknown = dict(instance, fit=[{"model": "llama3.3:70b", "status": "unknown"}], models=["llama3.3:70b"])
    assert ollama_models_to_warm(unknown, [loaded(context=2048)]) == []


def counting_down(**fields):
    return dict(loaded(**fields), expires_at="2026-12-04T18:10:00Z")


def test_a_pinned_model_loaded_again_without_keep_alive_is_not_pinned():
    """keep_alive -1 shows as an expiry in 2318 (math.MaxInt64 ns); a model Ollama loaded again with a finite
    keep_alive counts down: the proof names it, and the warm-up pins it again (its keep_alive -1)."""
    (message,) = ollama_plan_misses([dict(ps(counting_down()), __instance=planned())])
    assert "llama3.3:70b expires at 2026-12-04T18:10:00Z (loaded again without keep_alive -1)" in message
    assert ollama_models_to_warm(planned(), [counting_down()]) == ["llama3.3:70b"]
    assert ollama_models_to_warm(planned(), [loaded()]) == []
    # a warm-up that does not pin for good (ollama_warm_keep_alive "30m") promises no more than it sets
    assert ollama_plan_misses([dict(ps(counting_down()), __instance=planned())], keep_alive="30m") == []
    assert ollama_models_to_warm(planned(), [counting_down()], keep_alive="30m") == []


def test_the_warm_up_reloads_a_model_at_another_context_or_not_loaded():
    assert ollama_models_to_warm(planned(("llama3.3:70b", "qwen3:0.6b")), [loaded(context=4096)]) == [
        "llama3.3:70b",
        "qwen3:0.6b",
    ]


def warmed(instance, *steps):
    """The warm-up's loads: (model it loaded, models /api/ps showed after it) per step."""
    return [{"instance": instance, "model": model, "loaded": list(after)} for model, after in steps]


def test_a_pinned_model_evicted_by_a_later_load_names_both_and_the_plans_check():
    instance = planned(models=("llama3.3:70b", "qwen2.5:32b"))
    instance["together"] = {"status": "misfit", "message": "its 2 pinned models loaded together need 61.0 GiB"}
    loads = warmed("large", ("llama3.3:70b", ["llama3.3:70b"]), ("qwen2.5:32b", ["qwen2.5:32b"]))
    (message,) = ollama_plan_misses([dict(ps(loaded("qwen2.5:32b")), __instance=instance)], "-1", loads)
    assert message.startswith(
        "host gpu1, instance 'large' (GPUs 2-6): llama3.3:70b was evicted when the warm-up loaded qwen2.5:32b."
    )
    assert "80 % of the memory they leave" in message
    assert "the plan's check: its 2 pinned models loaded together need 61.0 GiB" in message
    assert "nvidia-smi" not in message  # nothing else held the GPUs


def test_an_eviction_on_another_instance_or_one_loaded_back_is_no_miss():
    instance = planned(models=("llama3.3:70b", "qwen2.5:32b"))
    both = ps(loaded(), loaded("qwen2.5:32b"))
    elsewhere = warmed("small", ("qwen3:0.6b", ["qwen3:0.6b"]), ("llama3.1:8b", ["llama3.1:8b"]))
    back = warmed(
        "large",
        ("llama3.3:70b", ["llama3.3:70b"]),
        ("qwen2.5:32b", ["qwen2.5:32b"]),
        ("llama3.3:70b", ["llama3.3:70b", "qwen2.5:32b"]),
    )
    assert ollama_plan_misses([dict(both, __instance=instance)], "-1", elsewhere + back) == []


def test_each_instance_gets_its_own_message_and_a_model_gone_unseen_is_not_loaded():
    large = planned(models=("llama3.3:70b", "qwen2.5:32b"))
    small = dict(planned(models=("llama3.1:8b",)), name="small")
    loads = warmed("large", ("llama3.3:70b", ["llama3.3:70b"]), ("qwen2.5:32b", ["qwen2.5:32b"]))
    results = [dict(ps(loaded("qwen2.5:32b")), __instance=large), dict(ps(), __instance=small)]
    first, second = ollama_plan_misses(results, "-1", loads)
    assert "instance 'large'" in first and "llama3.3:70b was evicted when the warm-up loaded qwen2.5:32b" in first
    assert "instance 'small'" in second and "llama3.1:8b is not loaded" in second and "evicted" not in second
    assert "nvidia-smi" in second


def test_an_eviction_the_plan_did_not_foresee_says_what_to_change():
    instance = planned(models=("llama3.3:70b", "qwen2.5:32b"))  # no together misfit in the plan
    loads = warmed("large", ("llama3.3:70b", ["llama3.3:70b"]), ("qwen2.5:32b", ["qwen2.5:32b"]))
    (message,) = ollama_plan_misses([dict(ps(loaded("qwen2.5:32b")), __instance=instance)], "-1", loads)
    assert "the plan's check" not in message
    assert message.endswith("lower num_parallel or context_length (ollama_fit_policy: adjust lowers them)")
