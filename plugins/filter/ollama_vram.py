"""VRAM estimate of a model in Ollama (llama.cpp --fit), and the fit check of an instance plan."""

from ansible.errors import AnsibleFilterError
from ansible_collections.ollama.fleet.plugins.module_utils import model_names
from ansible_collections.ollama.fleet.plugins.module_utils.report import gib as _gib

MIB = 1024 * 1024
GIB = 1024 * MIB
UBATCH = 512
FIT_MARGIN = 1024 * MIB
KV_BYTES = {"f16": 2.0, "q8_0": 1.0625, "q4_0": 0.5625}
# Which layers slide, per architecture (llama.cpp's swa pattern): True for a sliding-window layer.
SWA_LAYER = {
    "gemma3": lambda il: il % 6 != 5,
    "gemma2": lambda il: il % 2 == 0,
    "gptoss": lambda il: il % 2 == 0,
}
# Ollama loads these with one slot whatever OLLAMA_NUM_PARALLEL says (server/sched.go, Scheduler.load, v0.33):
# models without the completion capability (embedding models) and these model families.
SINGLE_SLOT_FAMILIES = frozenset(
    "mllama qwen3vl qwen3vlmoe qwen35 qwen35moe qwen3next lfm2 lfm2moe nemotron_h nemotron_h_moe nemotron_h_omni".split()
)
DEFAULT_VOCAB = 152064  # when /api/show omits it: as large as common vocabularies, so we over- not under-state


def _per_layer(value, layers, what):
    if isinstance(value, list):
        if len(value) != layers:
            raise AnsibleFilterError(f"ollama_vram_estimate: model_info {what} lists {len(value)} layers, not {layers}")
        return [int(v) for v in value]
    return [int(value)] * layers


def _positive_int(value, field):
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise AnsibleFilterError(f"ollama_vram_estimate: {field} must be an integer ≥ 1, got {value!r}")
    return value


def ollama_vram_estimate(
    model_info, size, num_ctx=4096, num_parallel=1, kv_cache_type="f16", flash_attention=True, gpu_count=1
):
    if not isinstance(model_info, dict) or "general.architecture" not in model_info:
        raise AnsibleFilterError(
            "ollama_vram_estimate: input must be /api/show's model_info, with general.architecture"
        )
    for field, value in (
        ("size", size),
        ("num_ctx", num_ctx),
        ("num_parallel", num_parallel),
        ("gpu_count", gpu_count),
    ):
        _positive_int(value, field)
    if kv_cache_type not in KV_BYTES:
        raise AnsibleFilterError(f"ollama_vram_estimate: kv_cache_type {kv_cache_type!r}; valid: {', '.join(KV_BYTES)}")
    arch = model_info["general.architecture"]

    def key(name, default=None):
        value = model_info.get(f"{arch}.{name}", default)
        if value is None:
            raise AnsibleFilterError(f"ollama_vram_estimate: model_info lacks {arch}.{name}")
        return value

    layers = int(key("block_count"))
    embd = int(key("embedding_length"))
    heads = _per_layer(key("attention.head_count"), layers, "attention.head_count")
    kv_heads = _per_layer(model_info.get(f"{arch}.attention.head_count_kv") or heads, layers, "head_count_kv")
    max_heads = max(heads) or 1
    k_len = int(model_info.get(f"{arch}.attention.key_length") or embd // max_heads)
    v_len = int(model_info.get(f"{arch}.attention.value_length") or embd // max_heads)
    ctx = min(num_ctx, int(model_info.get(f"{arch}.context_length") or num_ctx))
    cells = ctx * num_parallel
    elem = KV_BYTES[kv_cache_type if flash_attention else "f16"]
    window = model_info.get(f"{arch}.attention.sliding_window")
    slides = SWA_LAYER.get(arch) if window else None
    swa_cells = min(cells, -(-(int(window or 0) * num_parallel + UBATCH) // 256) * 256)

    kv = 0.0
    for il in range(layers):
        if slides and slides(il):
            kv += swa_cells * kv_heads[il] * (k_len + v_len) * KV_BYTES["f16"]
        else:
            kv += cells * kv_heads[il] * (k_len + v_len) * elem
    vocab = int(model_info.get(f"{arch}.vocab_size") or DEFAULT_VOCAB)
    per_device = UBATCH * embd * 32
    if not flash_attention:
        per_device += cells * UBATCH * max_heads * 4
    compute = UBATCH * vocab * 4 + per_device * gpu_count
    result = {
        "weights": int(size),
        "kv_cache": int(kv),
        "compute": int(compute),
        "overhead": FIT_MARGIN * gpu_count,
    }
    result["total"] = sum(result.values())
    return result


MIN_ADJUSTED_CTX = 2048


def effective_context(settings, vram_total):
    """context_length 0 lets Ollama choose by visible VRAM (v0.15.5+, ollama/ollama #14116, #14073): 4k, 32k, or 256k."""
    if settings.get("context_length"):
        return settings["context_length"]
    return 262144 if vram_total >= 47 * GIB else 32768 if vram_total >= 23 * GIB else 4096


def model_slots(info, num_parallel):
    """The slots Ollama really gives a model: 1 for embedding models and the single-slot families."""
    capabilities = info.get("capabilities")
    if capabilities is not None and "completion" not in capabilities:
        return 1
    if info["model_info"].get("general.architecture") in SINGLE_SLOT_FAMILIES:
        return 1
    return int(num_parallel)


def model_context(info, num_ctx):
    """The context Ollama loads a model at: the requested one, capped at the model's training context."""
    arch = info["model_info"].get("general.architecture")
    return min(int(num_ctx), int(info["model_info"].get(f"{arch}.context_length") or num_ctx))


def _estimate_for(instance, info, settings):
    return ollama_vram_estimate(
        info["model_info"],
        int(info["size"]),
        num_ctx=effective_context(settings, instance["vram_total"]),
        num_parallel=model_slots(info, settings.get("num_parallel", 1)),
        kv_cache_type=settings.get("kv_cache_type", "f16"),
        flash_attention=settings.get("flash_attention", True),
        gpu_count=len(instance["gpus"]),
    )


def _line(instance, model, info, settings, est, capacity, headroom):
    verdict = "fits" if est["total"] <= capacity else f"does not fit by {_gib(est['total'] - capacity)} GiB"
    return (
        f"instance '{instance['name']}' on {instance['host']}: {model} at num_ctx "
        f"{effective_context(settings, instance['vram_total'])} × "
        f"parallel {model_slots(info, settings['num_parallel'])} needs {_gib(est['total'])} GiB (weights {_gib(est['weights'])}, "
        f"KV {_gib(est['kv_cache'])}, compute {_gib(est['compute'])}, reserve {_gib(est['overhead'])}) "
        f"but {instance['gpu_label']} {'hold' if len(instance['gpus']) > 1 else 'holds'} "
        f"{_gib(instance['vram_total'])} GiB − {headroom:.0%}: {verdict}"
    )


def _lower_until(instance, fits, slotted):
    """Largest num_parallel, then context (halving, not below 2048), at which fits(settings); None if nothing
    does. slotted(settings): whether fewer slots save anything (a model that takes num_parallel slots)."""
    settings = dict(
        instance["settings"], context_length=effective_context(instance["settings"], instance["vram_total"])
    )
    while True:
        if fits(settings):
            return settings
        if slotted(settings):
            settings["num_parallel"] -= 1
        elif settings["context_length"] > MIN_ADJUSTED_CTX:
            settings["context_length"] = max(MIN_ADJUSTED_CTX, settings["context_length"] // 2)
        else:
            return None


def _adjust(instance, info, capacity):
    """Largest num_parallel, then context, at which the model fits alone; None if nothing does."""
    return _lower_until(
        instance,
        lambda settings: _estimate_for(instance, info, settings)["total"] <= capacity,
        # fewer slots than Ollama gives it save nothing
        lambda settings: model_slots(info, settings["num_parallel"]) > 1,
    )


def _apply(instance, adjusted):
    """Give INSTANCE the ADJUSTED settings (and their env); returns what changed, in words."""
    before = dict(instance["settings"], context_length=effective_context(instance["settings"], instance["vram_total"]))
    instance["settings"] = adjusted
    instance["env"] = dict(
        instance["env"],
        OLLAMA_NUM_PARALLEL=str(adjusted["num_parallel"]),
        OLLAMA_CONTEXT_LENGTH=str(adjusted["context_length"]),
    )
    changes = [
        f"{label} {before[key]} → {adjusted[key]}"
        for key, label in (("num_parallel", "num_parallel"), ("context_length", "context"))
        if before[key] != adjusted[key]
    ]
    return "; adjusted: " + ", ".join(changes)


# Ollama loads a model beside loaded ones only when its prediction is at most this share of the memory they leave
# (server/sched.go Scheduler.load: "Use 80% of free memory"); otherwise it evicts one first.
SCHEDULER_SHARE = 0.8


def ollama_load_prediction(info, num_ctx, slots):
    """Bytes Ollama v0.33 predicts for a model before it loads it (llm/llama_server.go PredictServerVRAM): the
    file's size plus an f16 KV cache of 2 × layers × the fewest KV heads × (embedding ÷ the most heads) × context
    × 2 bytes, the context being min(num_ctx, training context) × slots (server/sched.go
    effectiveLlamaServerContext); missing head counts read as 1 (fs/ggml KV.HeadCountKVMin, HeadCountMax).
    Ollama's figure, whatever OLLAMA_KV_CACHE_TYPE says and without compute buffers; with the default num_batch
    it adds nothing for the batch (automaticGenerationBatch keeps a larger batch only where it fits)."""
    mi = info["model_info"]
    arch = mi["general.architecture"]

    def counts(name):
        value = mi.get(f"{arch}.{name}", 1)
        return [int(v) for v in value] if isinstance(value, list) else [int(value)]

    heads_max = max(counts("attention.head_count")) or 1
    kv_heads = min(counts("attention.head_count_kv")) or 1
    head_dim = int(mi.get(f"{arch}.embedding_length", 0)) // heads_max
    layers = int(mi.get(f"{arch}.block_count", 0))
    return int(info["size"]) + 2 * layers * kv_heads * head_dim * model_context(info, num_ctx) * max(slots, 1) * 2


def _gpu_memory(instance):
    """Each GPU's memory (the plan's memory_total; an even share of vram_total where a plan lacks it)."""
    gpus = instance["gpus"]
    return [int(g.get("memory_total") or instance["vram_total"] // len(gpus)) for g in gpus]


def _place(settings, free, predicted):
    """The GPUs (indices into FREE) Ollama's scheduler loads a model predicted at PREDICTED bytes on."""
    single = [i for i in range(len(free)) if predicted <= free[i] * SCHEDULER_SHARE]
    if single and len(free) > 1 and not settings.get("sched_spread"):
        return [max(single, key=lambda i: (free[i], -i))]
    return list(range(len(free)))


def _load(instance, info, free):
    """One model loaded beside those already in FREE (each GPU's free bytes, lowered here by what it
    allocates): (its prediction, its GPUs, the bytes it allocates)."""
    settings = instance["settings"]
    slots = model_slots(info, settings.get("num_parallel", 1))
    context = effective_context(settings, instance["vram_total"])
    predicted = ollama_load_prediction(info, context, slots)
    where = _place(settings, free, predicted)
    est = ollama_vram_estimate(
        info["model_info"],
        int(info["size"]),
        num_ctx=context,
        num_parallel=slots,
        kv_cache_type=settings.get("kv_cache_type", "f16"),
        flash_attention=settings.get("flash_attention", True),
        gpu_count=len(where),
    )
    allocated = est["total"] - est["overhead"]
    # llama.cpp splits a model over its GPUs by their free memory
    spare = [max(free[i], 0) for i in where]
    for i, part in zip(where, spare, strict=True):
        free[i] -= allocated * part // sum(spare) if sum(spare) else allocated // len(where)
    return predicted, where, allocated


def _together_message(instance, result, memory, crowded, headroom):
    shares, total, capacity, evicts = result["shares"], result["total"], result["capacity"], result["evicts"]
    listed = ", ".join(f"{s['model']} {_gib(s['bytes'])}" for s in shares)
    message = (
        f"instance '{instance['name']}' on {instance['host']}: its {len(shares)} pinned models loaded together "
        f"need {_gib(total)} GiB ({listed}, reserve {_gib(FIT_MARGIN * len(memory))}) and {instance['gpu_label']} "
        f"{'hold' if len(memory) > 1 else 'holds'} {_gib(instance['vram_total'])} GiB − {headroom:.0%} = "
        f"{_gib(capacity)} GiB"
    )
    if crowded and total <= capacity:
        message += f"; but Ollama's placement fills GPU {', '.join(map(str, crowded))} past it"
    if evicts:
        message += (
            f"; Ollama would not load {evicts['model']} beside the models before it: it predicts "
            f"{_gib(evicts['predicted'])} GiB, over 80 % of the {_gib(evicts['free'])} GiB they leave, and evicts one "
            "(server/sched.go Scheduler.load, findRunnerToUnload)"
        )
    if result["status"] == "fits":
        return message + ": fits"
    return message + (
        ": does not fit together (pin fewer models on this instance, give it more GPUs, or lower num_parallel or "
        "context_length; ollama_fit_policy: adjust lowers them)"
    )


def together(instance, entries, headroom):
    """An instance's pinned models loaded one after another, in the warm-up's order (the plan's), as Ollama's
    scheduler places them (server/sched.go, v0.33): a model whose prediction fits in 80 % of one GPU's free
    memory goes to the GPU with the most free (bestSingleGPUFit; OLLAMA_SCHED_SPREAD skips that), else it
    spreads over all the instance's GPUs (bestGPUGroupByAvailableMemory); once a model is loaded, the next
    loads beside it only if its prediction fits in 80 % of the free memory left where it goes, else Ollama
    evicts one (Scheduler.load). Free memory is each GPU's memory less what the loaded runners allocate (our
    estimate less the fit margin, split over their GPUs by free memory: updateFreeSpace).

    ENTRIES: [(model, info)] of known models. Returns {status (fits, misfit), total (every model's allocation
    plus one fit margin per GPU), capacity (VRAM less headroom), shares: [{model, bytes, gpus (indices into
    the instance's gpus)}], evicts: None or {model, predicted, free}, message}."""
    memory = _gpu_memory(instance)
    free = list(memory)
    shares, evicts = [], None
    for model, info in entries:
        before = list(free)
        predicted, where, allocated = _load(instance, info, free)
        room = sum(before[i] for i in where)
        if shares and evicts is None and predicted > room * SCHEDULER_SHARE:
            evicts = {"model": model, "predicted": predicted, "free": room}
        shares.append({"model": model, "bytes": allocated, "gpus": where})
    total = sum(s["bytes"] for s in shares) + FIT_MARGIN * len(memory)
    capacity = int(instance["vram_total"] * (1 - headroom))
    # each GPU keeps the fit margin and the headroom free
    crowded = [
        instance["gpus"][i].get("index", i) for i in range(len(memory)) if free[i] < FIT_MARGIN + memory[i] * headroom
    ]
    status = "fits" if total <= capacity and evicts is None and not crowded else "misfit"
    result = {"status": status, "total": total, "capacity": capacity, "shares": shares, "evicts": evicts}
    return dict(result, message=_together_message(instance, result, memory, crowded, headroom))


def _by_pinned_name(plan, models):
    """MODELS (catalogue and Ollama's metadata, the later entry of one model winning) under the names the plan
    pins them by: Ollama's store and the catalogue may spell a model otherwise (model_names.key)."""
    by_key = {}
    for name, info in models.items():
        try:
            by_key[model_names.key(name)] = info
        except model_names.InvalidModelName:
            continue  # a catalogue entry no instance can pin
    pinned = {model for instance in plan for model in instance.get("models", [])}
    return {model: by_key[model_names.key(model)] for model in pinned if model_names.key(model) in by_key}


def _fit_one(instance, model, info, headroom, policy):
    """MODEL alone on INSTANCE: its fit entry, the instance's settings lowered in place where policy adjust
    lowers them. INFO: its metadata, or None (unknown until pulled)."""
    if not info:
        return {
            "model": model,
            "status": "unknown",
            "source": None,
            "message": f"{model}: not known yet (pull it first)",
        }
    capacity = int(instance["vram_total"] * (1 - headroom))
    est = _estimate_for(instance, info, instance["settings"])
    message = _line(instance, model, info, instance["settings"], est, capacity, headroom)
    status = "fits" if est["total"] <= capacity else "misfit"
    adjusted = _adjust(instance, info, capacity) if status == "misfit" and policy == "adjust" else None
    if adjusted is not None:
        message += _apply(instance, adjusted)
        status = "adjusted"
    return {"model": model, "status": status, "message": message, "source": info.get("source", "catalogue")}


def _settle(instance, models, headroom):
    """Every known model's estimate, slots and context at the instance's final settings; where the check of the
    models together lowered them, each model's line says so."""
    capacity = int(instance["vram_total"] * (1 - headroom))
    settings = instance["settings"]
    lowered_together = instance.get("together", {}).get("status") == "adjusted"
    for fit in (f for f in instance["fit"] if f["status"] != "unknown"):
        info = models[fit["model"]]
        fit["estimate"] = _estimate_for(instance, info, settings)
        if lowered_together:
            fit["message"] = _line(instance, fit["model"], info, settings, fit["estimate"], capacity, headroom)
            fit["message"] += "; adjusted with the instance's other models"
            fit["status"] = "adjusted"
        fit["slots"] = model_slots(info, settings["num_parallel"])
        fit["context"] = model_context(info, effective_context(settings, instance["vram_total"]))


def ollama_fit_check(plan, models, headroom=0.10, policy="fail"):
    models = _by_pinned_name(plan, models)
    if policy not in ("fail", "warn", "adjust"):
        raise AnsibleFilterError(f"ollama_fit_check: policy {policy!r}; valid: fail, warn, adjust")
    if isinstance(headroom, bool) or not isinstance(headroom, (int, float)) or not 0 <= headroom < 1:
        raise AnsibleFilterError(f"ollama_fit_check: headroom must be a fraction in [0, 1), got {headroom!r}")
    checked, misfits = [], []
    for instance in plan:
        instance = dict(instance, settings=dict(instance["settings"]), fit=[])
        for model in instance.get("models", []):
            instance["fit"].append(_fit_one(instance, model, models.get(model), headroom, policy))
        misfits += [f["message"] for f in instance["fit"] if f["status"] == "misfit"]
        misfits += _check_together(instance, models, headroom, policy)
        _settle(instance, models, headroom)
        checked.append(instance)
    if misfits and policy == "fail":
        raise AnsibleFilterError(
            "VRAM fit check failed (ollama_fit_policy: fail; lower num_parallel or context_length, "
            "give the instance more GPUs, or set ollama_fit_policy to warn or adjust):\n" + "\n".join(misfits)
        )
    if misfits and policy == "adjust":  # what adjust cannot bring into VRAM would run on the CPU: as fail does
        raise AnsibleFilterError(
            "VRAM fit check failed (ollama_fit_policy: adjust found no num_parallel and context at which these fit; "
            "give the instance more GPUs or fewer models, or set ollama_fit_policy to warn):\n" + "\n".join(misfits)
        )
    return checked


def _check_together(instance, models, headroom, policy):
    """INSTANCE's known pinned models loaded at once (together): instance["together"], adjusted with policy
    adjust; returns the misfit's message, if any, in a list."""
    entries = [(f["model"], models[f["model"]]) for f in instance["fit"] if f["status"] != "unknown"]
    if len(entries) < 2:
        return []
    result = together(instance, entries, headroom)
    if result["status"] == "misfit" and policy == "adjust":
        adjusted = _lower_until(
            instance,
            lambda settings: together(dict(instance, settings=settings), entries, headroom)["status"] == "fits",
            lambda settings: any(model_slots(info, settings["num_parallel"]) > 1 for _, info in entries),
        )
        if adjusted is not None:
            changes = _apply(instance, adjusted)
            result = together(instance, entries, headroom)
            result["status"] = "adjusted"
            result["message"] += changes
    instance["together"] = result
    return [result["message"]] if result["status"] == "misfit" else []


def ollama_fit_notes(plan):
    """What the fit check found worth saying, from ollama_fit_check's plan: every model and every instance's
    models together (together) that do not fit or were adjusted, their messages in plan order."""
    noted = ("misfit", "adjusted")
    notes = []
    for instance in plan:
        notes += [f["message"] for f in instance.get("fit", []) if f["status"] in noted]
        if instance.get("together", {}).get("status") in noted:
            notes.append(instance["together"]["message"])
    return notes


class FilterModule:
    def filters(self):
        return {
            "ollama_vram_estimate": ollama_vram_estimate,
            "ollama_fit_check": ollama_fit_check,
            "ollama_fit_notes": ollama_fit_notes,
        }
