"""Proof after a deploy: what each instance's /api/ps shows against what the plan promised."""

# /api/ps names a model as its store does; the plan as the inventory spells it: compared by Ollama's rule
from ansible_collections.ollama.fleet.plugins.module_utils.model_names import key as model_key
from ansible_collections.ollama.fleet.plugins.module_utils.report import gib as _gib

PROMISED = ("fits", "adjusted")
CAUSES = (
    "check: the unit may open its GPUs' device nodes and nvidia-uvm is loaded (`ls -l /dev/nvidia*`); "
    "no other process holds memory on {gpus} (`nvidia-smi --query-compute-apps=pid,used_memory --format=csv`); "
    "the plan's estimate{estimate} is not below what Ollama allocates (lower ollama_num_parallel or "
    "ollama_context_length, or raise ollama_fit_headroom)"
)


# keep_alive -1 is kept as the longest duration Go has (server/sched.go: math.MaxInt64), so /api/ps shows a
# pinned model's expiry some 292 years ahead (2318 from 2026). An expiry before this year is a countdown: the
# model was loaded again with a finite keep_alive (an eviction, a client's reload: OLLAMA_KEEP_ALIVE).
PINNED_YEAR = 2200


def countdown(model):
    """The expiry /api/ps shows for MODEL when it counts down (a finite keep_alive), else None."""
    stamp = str(model.get("expires_at") or "")
    return stamp if stamp[:4].isdigit() and int(stamp[:4]) < PINNED_YEAR else None


def forever(keep_alive):
    """Whether a keep_alive (a Go duration or seconds) keeps a model loaded for good: negative."""
    return str(keep_alive).strip().startswith("-")


def evictions(loads, instance):
    """{evicted model: the model whose load evicted it (the last time)} on INSTANCE, from the warm-up's LOADS."""
    evicted, before = {}, set()
    for load in (step for step in loads if step["instance"] == instance):
        now = {model_key(name) for name in load["loaded"]}
        for gone in before - now:
            evicted[gone] = load["model"]
        before = now
    return evicted


def _model_misses(fit, loaded, keep_alive, evicted):
    model = loaded.get(model_key(fit["model"]))
    if model is None:
        by = evicted.get(model_key(fit["model"]))
        return [f"{fit['model']} was evicted when the warm-up loaded {by}" if by else f"{fit['model']} is not loaded"]
    misses = []
    if forever(keep_alive) and countdown(model):
        misses.append(f"{fit['model']} expires at {countdown(model)} (loaded again without keep_alive -1)")
    size, vram = int(model.get("size", 0)), int(model.get("size_vram", 0))
    if vram < size:
        cpu = round(100 * (size - vram) / size) if size else 0
        misses.append(f"{fit['model']} has {_gib(vram)} of {_gib(size)} GiB in VRAM ({cpu} % on the CPU)")
    if model.get("context_length") != fit["context"]:
        misses.append(f"{fit['model']} runs at context {model.get('context_length')}, planned {fit['context']}")
    return misses


def ollama_models_to_warm(instance, loaded, keep_alive="-1"):
    """The pinned models of INSTANCE that /api/ps (LOADED: its models list) does not show as pinned: not
    loaded, at another context than planned (a client's options.num_ctx reloaded it), or, when the warm-up's
    KEEP_ALIVE is forever, counting down (loaded again with a finite keep_alive). A warm-up request without
    options loads them again at the instance's context (server/sched.go needsReload) or sets their keep_alive
    (useLoadedRunner)."""
    seen = {model_key(m["name"]): m for m in loaded}
    planned = {model_key(f["model"]): f.get("context") for f in instance.get("fit", [])}

    def pinned(name):
        model = seen.get(name)
        if model is None or (planned.get(name) is not None and model.get("context_length") != planned[name]):
            return False
        return not (forever(keep_alive) and countdown(model))

    return [m for m in instance.get("models", []) if not pinned(model_key(m))]


def ollama_warm_misses(results, keep_alive="-1"):
    """For the no-change path (vars/main/host_state.yml): what warm.yml would load, one message per model, from RESULTS
    shaped as ollama_plan_misses reads them (an instance as C(__instance), its /api/ps as C(status) and C(json))."""
    misses = []
    for result in results:
        instance = result["__instance"]
        answer = result.get("json") if result.get("status") == 200 else None
        loaded = answer.get("models") or [] if isinstance(answer, dict) else []
        misses += [
            f"instance {instance['name']}: {model} is not loaded as pinned"
            for model in ollama_models_to_warm(instance, loaded, keep_alive)
        ]
    return misses


# Why a pinned model goes when another loads, and where the plan said so.
EVICTED = (
    "Ollama loads a model beside the loaded ones only when its prediction fits in 80 % of the memory they leave, "
    "else it evicts one, keep_alive -1 or not (server/sched.go Scheduler.load, findRunnerToUnload); {what}"
)
WHAT_TO_CHANGE = (
    "pin fewer models on this instance, give it more GPUs, or lower num_parallel or context_length "
    "(ollama_fit_policy: adjust lowers them)"
)


def ollama_plan_misses(results, keep_alive="-1", loads=()):
    messages = []
    for result in results:
        instance = result["__instance"]
        where = f"host {instance['host']}, instance '{instance['name']}' ({instance['gpu_label']})"
        promised = [f for f in instance.get("fit", []) if f.get("status") in PROMISED]
        if not promised:
            continue
        if result.get("status") != 200 or not isinstance(result.get("json"), dict):
            messages.append(f"{where}: /api/ps did not answer ({result.get('msg', 'no answer')})")
            continue
        loaded = {model_key(m["name"]): m for m in result["json"].get("models", [])}
        pinned = {model_key(f["model"]) for f in promised}
        evicted = {m: by for m, by in evictions(loads, instance["name"]).items() if m in pinned and m not in loaded}
        misses = [miss for fit in promised for miss in _model_misses(fit, loaded, keep_alive, evicted)]
        if not misses:
            continue
        hints = []
        if evicted:
            # the plan's check of the models together says what to change, where it found them not to fit
            together = instance.get("together", {})
            said = f"the plan's check: {together['message']}" if together.get("status") == "misfit" else ""
            hints.append(EVICTED.format(what=said or WHAT_TO_CHANGE))
        if len(misses) > len(evicted):
            estimates = [f"{f['model']} {_gib(f['estimate']['total'])} GiB" for f in promised]
            hints.append(CAUSES.format(gpus=instance["gpu_label"], estimate=f" ({', '.join(estimates)})"))
        messages.append(f"{where}: " + "; ".join(misses) + ". " + ". ".join(hints))
    return messages


class FilterModule:
    def filters(self):
        return {
            "ollama_plan_misses": ollama_plan_misses,
            "ollama_models_to_warm": ollama_models_to_warm,
            "ollama_warm_misses": ollama_warm_misses,
        }
