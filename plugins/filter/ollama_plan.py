"""GPUs + the operator's settings → a validated plan: one Ollama instance per GPU group."""

import re

from ansible.errors import AnsibleFilterError
from ansible_collections.ollama.fleet.plugins.module_utils import addresses, model_names
from ansible_collections.ollama.fleet.plugins.module_utils.plan import planned_use
from ansible_collections.ollama.fleet.plugins.module_utils.report import gib as _gib
from ansible_collections.ollama.fleet.plugins.module_utils.report import text_table

# Typed settings: field → (environment variable, kind, bounds or choices).
KNOBS = {
    "num_parallel": ("OLLAMA_NUM_PARALLEL", "int", (1, None)),
    "context_length": ("OLLAMA_CONTEXT_LENGTH", "int", (0, None)),
    "flash_attention": ("OLLAMA_FLASH_ATTENTION", "bool", None),
    "kv_cache_type": ("OLLAMA_KV_CACHE_TYPE", "choice", ("f16", "q8_0", "q4_0")),
    "keep_alive": ("OLLAMA_KEEP_ALIVE", "duration", None),
    "load_timeout": ("OLLAMA_LOAD_TIMEOUT", "duration", None),
    "max_loaded_models": ("OLLAMA_MAX_LOADED_MODELS", "int", (0, None)),
    "max_queue": ("OLLAMA_MAX_QUEUE", "int", (1, None)),
    "sched_spread": ("OLLAMA_SCHED_SPREAD", "bool", None),
    "gpu_overhead": ("OLLAMA_GPU_OVERHEAD", "int", (0, None)),
    "origins": ("OLLAMA_ORIGINS", "list", None),
    "debug": ("OLLAMA_DEBUG", "int", (0, 2)),
}
INSTANCE_KEYS = {"name", "gpus", "port", "models", "warm", "extra_env", *KNOBS}
# Ollama v0.33's variables (envconfig/config.go at v0.33.0-rc2) that extra_env may set.
FREE_OLLAMA_ENV = {
    "OLLAMA_LLM_LIBRARY",
    "OLLAMA_DEBUG_LOG_REQUESTS",
    "OLLAMA_NOPRUNE",
    "OLLAMA_NOHISTORY",
    "OLLAMA_NO_CLOUD",
    "OLLAMA_REMOTES",
    "OLLAMA_MAX_TRANSFER_STREAMS",
    "OLLAMA_GO_TEMPLATE",
    "OLLAMA_VULKAN",
    "OLLAMA_IGPU_ENABLE",
    "OLLAMA_AUTH",
}
MANAGED_ENV = {
    "OLLAMA_HOST": "the instance's address and port",
    "OLLAMA_MODELS": "ollama_models_dir",
    "CUDA_VISIBLE_DEVICES": "the instance's gpus",
    "HIP_VISIBLE_DEVICES": "the instance's gpus",
    "ROCR_VISIBLE_DEVICES": "the instance's gpus",
    "GPU_DEVICE_ORDINAL": "the instance's gpus",
    **{env: f"the field {field}" for field, (env, _, _) in KNOBS.items()},
}
REMOVED_ENV = {"OLLAMA_MAX_VRAM", "OLLAMA_NEW_ENGINE", "OLLAMA_MULTIUSER_CACHE"}
STRATEGIES = ("per_gpu", "all", "fixed", "balanced")
DURATION = re.compile(r"^-?(\d+(\.\d+)?(ns|us|µs|ms|s|m|h))+$|^-?\d+$")
NAME = re.compile(r"^[a-z0-9][a-z0-9_-]{0,31}$")


class PlanError(AnsibleFilterError):
    pass


def _where(host, instance=None):
    return f"host {host}" + (f", instance '{instance}'" if instance is not None else "")


# Per kind of setting: (normalise(value, spec): the value, None when invalid; what is valid (spec, value)).
def _as_int(value, spec):
    # Decimal strings are accepted: `-e ollama_num_parallel=4` arrives as "4".
    if isinstance(value, bool) or not (isinstance(value, int) or (isinstance(value, str) and value.isdigit())):
        return None
    low, high = spec
    number = int(value)
    return number if low <= number and (high is None or number <= high) else None


def _int_range(spec, value):
    if isinstance(value, bool) or not (isinstance(value, int) or (isinstance(value, str) and value.isdigit())):
        return "must be an integer"
    low, high = spec
    return f"must be an integer from {low}" + (f" to {high}" if high is not None else " up")


def _as_duration(value, _spec):
    valid = not isinstance(value, bool) and (
        isinstance(value, int) or (isinstance(value, str) and DURATION.match(value))
    )
    return value if valid else None


def _as_list(value, _spec):
    value = [v for v in value.split(",") if v] if isinstance(value, str) else value
    return value if isinstance(value, list) and all(isinstance(v, str) for v in value) else None


KINDS = {
    "int": (_as_int, _int_range),
    "bool": (
        lambda value, _spec: value if isinstance(value, bool) else None,
        lambda _spec, _value: "must be true or false",
    ),
    "choice": (
        lambda value, spec: value if value in spec else None,
        lambda spec, _value: f"must be one of {', '.join(spec)}",
    ),
    "duration": (
        _as_duration,
        lambda _spec, _value: 'must be a duration like "5m", "1h30m", "-1" (forever) or seconds',
    ),
    "list": (_as_list, lambda _spec, _value: "must be a list of strings"),
}


def _check_value(where, field, kind, spec, value):
    """Return the value normalised for its kind, or raise naming the field and what is valid."""
    normalise, valid = KINDS[kind]
    checked = normalise(value, spec)
    if checked is None:
        raise PlanError(f"{where}, field {field}: {valid(spec, value)}, got {value!r} ({type(value).__name__})")
    return checked


def _check_settings(where, prefix, settings):
    checked = {}
    for field, value in settings.items():
        if field not in KNOBS:
            raise PlanError(f"{where}, field {prefix}{field}: unknown setting; valid: {', '.join(sorted(KNOBS))}")
        _, kind, spec = KNOBS[field]
        if field == "keep_alive" and value in ("", None):
            continue  # planned: _keep_alive
        checked[field] = _check_value(where, prefix + field, kind, spec, value)
    return checked


def _check_extra_env(where, field, extra_env):
    if not isinstance(extra_env, dict):
        raise PlanError(f"{where}, field {field}: must be a map of NAME: value, got {type(extra_env).__name__}")
    for name, value in extra_env.items():
        if name in MANAGED_ENV:
            raise PlanError(f"{where}, field {field}.{name}: set by the toolkit from {MANAGED_ENV[name]}; use that")
        if name in REMOVED_ENV:
            raise PlanError(f"{where}, field {field}.{name}: removed from Ollama, it has no effect in v0.33")
        if name.startswith("OLLAMA_") and name not in FREE_OLLAMA_ENV:
            raise PlanError(
                f"{where}, field {field}.{name}: not an Ollama v0.33 variable; valid in extra_env: "
                f"{', '.join(sorted(FREE_OLLAMA_ENV))} (typed settings: {', '.join(sorted(KNOBS))})"
            )
        if not isinstance(value, (str, int, float)) or isinstance(value, bool):
            raise PlanError(f"{where}, field {field}.{name}: must be a string or number, got {value!r}")
    return {name: str(value) for name, value in extra_env.items()}


def _units(gpus):
    """What can be given to an instance: whole GPUs, and the MIG devices of GPUs in MIG mode."""
    units = []
    for gpu in gpus:
        if gpu.get("mig_mode"):
            for mig in gpu.get("mig_devices", []):
                units.append(
                    dict(
                        mig,
                        mig=True,
                        parent_index=gpu["index"],
                        label=f"{gpu['index']}/{mig['index']}",
                        device_minor=gpu.get("minor_number"),  # a MIG device is reached through its GPU's node
                    )
                )
        else:
            units.append(dict(gpu, mig=False, label=str(gpu["index"]), device_minor=gpu.get("minor_number")))
    return units


def _device_nodes(units):
    """The /dev/nvidiaN nodes an instance's unit may open; [] when a minor number is unknown (the unit then
    allows every NVIDIA GPU node, as before: see ollama@.service's drop-in)."""
    minors = [u.get("device_minor") for u in units]
    if any(m is None for m in minors):
        return []
    return [f"/dev/nvidia{m}" for m in sorted(set(minors))]


def _label(units):
    if len(units) == 1:
        unit = units[0]
        return f"MIG {unit['label']}" if unit["mig"] else f"GPU {unit['label']}"
    indices = [u["index"] for u in units]
    if indices == list(range(indices[0], indices[0] + len(indices))):
        return f"GPUs {indices[0]}-{indices[-1]}"
    return "GPUs " + ",".join(map(str, indices))


def _auto_name(units):
    if units[0]["mig"]:
        return f"mig{units[0]['parent_index']}-{units[0]['index']}"
    return "gpu" + _label(units).split(" ", 1)[1].replace(",", "_")


def _strategy_groups(host, units, config):
    strategy = config.get("strategy", "per_gpu")
    if strategy not in STRATEGIES:
        raise PlanError(
            f"{_where(host)}, field ollama_gpu_strategy: {strategy!r} is unknown; valid: {', '.join(STRATEGIES)}"
        )
    whole = [u for u in units if not u["mig"]]
    migs = [[u] for u in units if u["mig"]]  # one MIG device per instance, whatever the strategy
    if strategy == "per_gpu":
        return [[u] for u in whole] + migs
    if strategy == "all":
        return ([whole] if whole else []) + migs
    if strategy == "fixed":
        size = _check_value(_where(host), "ollama_gpu_group_size", "int", (1, None), config.get("group_size"))
        return [whole[i : i + size] for i in range(0, len(whole), size)] + migs
    count = _check_value(_where(host), "ollama_gpu_group_count", "int", (1, None), config.get("group_count"))
    if count > len(whole):
        raise PlanError(
            f"{_where(host)}, field ollama_gpu_group_count: {count} groups need at least {count} GPUs; "
            f"this host has {len(whole)}"
        )
    groups = [[] for _ in range(count)]
    # Largest GPU first into the group with the least memory so far (LPT): near-equal VRAM per group.
    for unit in sorted(whole, key=lambda u: (-u["memory_total"], u["index"])):
        min(groups, key=lambda g: (sum(u["memory_total"] for u in g), len(g))).append(unit)
    groups = [sorted(g, key=lambda u: u["index"]) for g in groups]
    return sorted(groups, key=lambda g: g[0]["index"]) + migs


def _resolve(host, name, refs, units, gpus):
    where = _where(host, name)
    if not isinstance(refs, list) or not refs:
        raise PlanError(f"{where}, field gpus: must be a non-empty list of GPU indices or UUIDs")
    by_index = {u["index"]: u for u in units if not u["mig"]}
    by_uuid = {u["uuid"]: u for u in units}
    mig_parents = {g["index"]: g for g in gpus if g.get("mig_mode")}
    mig_parents.update({g["uuid"]: g for g in gpus if g.get("mig_mode")})
    valid = (f"valid: indices {', '.join(map(str, sorted(by_index)))}" if by_index else "valid: no whole GPU") + (
        f" or UUIDs {', '.join(sorted(by_uuid))}" if by_uuid else ""
    )
    chosen = []
    for ref in refs:
        if isinstance(ref, bool) or not isinstance(ref, (int, str)):
            raise PlanError(f"{where}, field gpus: {ref!r} is neither an index nor a UUID; {valid}")
        key = int(ref) if isinstance(ref, str) and ref.isdigit() else ref
        if key in mig_parents:
            parent = mig_parents[key]
            raise PlanError(
                f"{where}, field gpus: GPU {parent['index']} is in MIG mode and cannot be used whole; list its MIG "
                f"devices instead: {', '.join(m['uuid'] for m in parent.get('mig_devices', [])) or 'none configured'}"
            )
        unit = by_index.get(key) if isinstance(key, int) else by_uuid.get(key)
        if unit is None:
            raise PlanError(f"{where}, field gpus: GPU {ref!r} does not exist on this host; {valid}")
        if unit in chosen:
            raise PlanError(f"{where}, field gpus: GPU {ref!r} is listed twice")
        chosen.append(unit)
    if any(u["mig"] for u in chosen) and len(chosen) > 1:
        kinds = "MIG devices mixed with whole GPUs" if not all(u["mig"] for u in chosen) else "several MIG devices"
        raise PlanError(
            f"{where}, field gpus: {kinds}; CUDA uses one MIG device per process, so give each its own instance"
        )
    return chosen


def _instances_from_config(host, units, gpus, config):
    given = config.get("instances")
    if not isinstance(given, list) or not given:
        raise PlanError(f"{_where(host)}, field ollama_instances: must be a non-empty list of instances")
    specs = []
    for position, spec in enumerate(given):
        if not isinstance(spec, dict):
            raise PlanError(f"{_where(host)}, field ollama_instances[{position}]: must be a map, got {spec!r}")
        name = spec.get("name", f"#{position}")
        unknown = sorted(set(spec) - INSTANCE_KEYS)
        if unknown:
            raise PlanError(
                f"{_where(host, name)}, field {unknown[0]}: unknown key; valid: {', '.join(sorted(INSTANCE_KEYS))}"
            )
        units_of = _resolve(host, name, spec.get("gpus"), units, gpus)
        specs.append((spec, units_of))
    return specs


def _keep_alive(settings, models):
    """SETTINGS with keep_alive planned where the inventory leaves it empty: -1 on an instance that pins
    models, so a pinned model Ollama loads again without a keep_alive (after an eviction, a client's reload,
    a runner's restart) stays pinned (server/sched.go: a new load takes OLLAMA_KEEP_ALIVE); Ollama's 5m on
    an instance that pins nothing, where models come and go on demand."""
    if settings.get("keep_alive") not in (None, ""):
        return settings
    return dict(settings, keep_alive="-1" if models else "5m")


def _loaded_models(where, settings, models, units_of):
    """SETTINGS with max_loaded_models at least the models the instance pins. Ollama keeps at most
    OLLAMA_MAX_LOADED_MODELS loaded and evicts one to load another (server/sched.go processPending); 0 means
    3 per GPU (defaultModelsPerGPU), and an explicit value is the instance's total. Where Ollama's default is
    fewer than the pinned models it is raised to their number; an explicit value below it is refused."""
    wanted = settings.get("max_loaded_models", 0)
    default = 3 * max(len(units_of), 1)
    if wanted and wanted < len(models):
        raise PlanError(
            f"{where}, field max_loaded_models: {wanted} is fewer than the {len(models)} models the instance pins "
            f"({', '.join(models)}), and Ollama would evict one to load another; set at least {len(models)}, or 0 "
            f"(Ollama's 3 per GPU, {default} here, which the plan raises to the pinned models where fewer)"
        )
    if not wanted and default < len(models):
        return dict(settings, max_loaded_models=len(models))
    return settings


def _check_overlaps(host, planned):
    owner = {}
    for name, units_of in planned:
        for unit in units_of:
            if unit["uuid"] in owner:
                raise PlanError(
                    f"{_where(host, name)}, field gpus: GPU {unit['label']} ({unit['uuid']}) is already in instance "
                    f"'{owner[unit['uuid']]}'; each GPU belongs to one instance"
                )
            owner[unit["uuid"]] = name


def _check_gpus(host, gpus, config):
    if not isinstance(gpus, list):
        raise PlanError(f"{_where(host)}, field ollama_gpus: must be a list of GPUs, got {type(gpus).__name__}")
    for gpu in gpus:
        if not isinstance(gpu, dict) or not {"index", "uuid", "memory_total"} <= set(gpu):
            raise PlanError(
                f"{_where(host)}, field ollama_gpus: each GPU needs index, uuid and memory_total; got {gpu!r}"
            )
    if not gpus:
        raise PlanError(
            f"{_where(host)}: no GPU found ({config.get('discovery_reason') or 'empty list'}); install the NVIDIA "
            "driver, or pin ollama_gpus in inventory, or remove the host from ollama_gpu_hosts"
        )


class _Ports:
    """Ports for a host's instances: an instance's own, else the next free one from the base port, never the
    gateway's nor another instance's."""

    def __init__(self, host, config, specs):
        self.gateway = {int(p) for p in config.get("gateway_ports") or []}
        self.next = _check_value(_where(host), "ollama_base_port", "int", (1024, 65535), config.get("base_port", 11435))
        # the ports instances give themselves, as take() will read them ("11435" too): no other instance gets one
        normalise, _ = KINDS["int"]
        self.explicit = {normalise(spec["port"], (1024, 65535)) for spec, _ in specs if "port" in spec} - {None}
        self.taken = set()

    def take(self, where, spec):
        if "port" in spec:
            port = _check_value(where, "port", "int", (1024, 65535), spec["port"])
        else:
            while self.next in self.explicit | self.taken | self.gateway:
                self.next += 1
            port = self.next
        if port in self.gateway:
            raise PlanError(f"{where}, field port: {port} is the gateway's port on this host; pick another")
        if port in self.taken:
            raise PlanError(f"{where}, field port: {port} is used by another instance on this host")
        self.taken.add(port)
        return port


def _instance_name(host, spec, units_of, names):
    name = spec.get("name") or _auto_name(units_of)
    where = _where(host, name)
    if not isinstance(name, str) or not NAME.match(name):
        raise PlanError(f"{where}, field name: must be 1-32 of a-z, 0-9, '-' and '_', starting with a letter or digit")
    if name in names:
        raise PlanError(f"{where}, field name: used by another instance on this host; names must be unique")
    names.add(name)
    return name, where


def _instance_models(where, spec, config):
    models = spec.get("models", config.get("models") or [])
    if not isinstance(models, list) or not all(isinstance(m, str) and m for m in models):
        raise PlanError(f"{where}, field models: must be a list of model names like llama3.1:8b")
    return _pinned_names(where, models)


def _environment(settings, extra, base):
    """The instance's environment file: BASE (address, store, devices), every setting as its OLLAMA_* variable,
    then the operator's extra variables."""
    env = dict(base)
    for field, value in sorted(settings.items()):
        variable = KNOBS[field][0]
        if isinstance(value, bool):
            env[variable] = "true" if value else "false"
        elif isinstance(value, list):
            if value:  # an empty list leaves Ollama's default
                env[variable] = ",".join(value)
        else:
            env[variable] = str(value)
    return dict(env, **extra)


def _instance(host, spec, units_of, names, ports, shared):
    """One instance of the plan from its SPEC (the inventory's entry, or {} for a strategy's group) and its GPUs."""
    name, where = _instance_name(host, spec, units_of, names)
    port = ports.take(where, spec)
    own = {k: v for k, v in spec.items() if k in KNOBS}
    settings = dict(shared["settings"], **_check_settings(where, "", own))
    extra = dict(shared["extra_env"], **_check_extra_env(where, "extra_env", spec.get("extra_env") or {}))
    models = _instance_models(where, spec, shared["config"])
    settings = _keep_alive(_loaded_models(where, settings, models, units_of), models)
    warm = spec.get("warm", shared["config"].get("warm", True))
    if not isinstance(warm, bool):
        raise PlanError(f"{where}, field warm: must be true or false, got {warm!r}")
    by_index = shared["by"] == "index"
    devices = ",".join(str(u["index"]) if by_index and not u["mig"] else u["uuid"] for u in units_of)
    address = shared["config"].get("bind_address", "127.0.0.1")
    base = {
        "OLLAMA_HOST": f"{address}:{port}",
        "OLLAMA_MODELS": shared["config"].get("models_dir", "/var/lib/ollama/models"),
        "CUDA_VISIBLE_DEVICES": devices,
    }
    return {
        "host": host,
        "name": name,
        "port": port,
        "address": address,
        "gpus": [{k: u.get(k) for k in ("index", "uuid", "name", "memory_total", "mig")} for u in units_of],
        "gpu_label": _label(units_of),
        "vram_total": sum(u["memory_total"] for u in units_of),
        "cuda_visible_devices": devices,
        "device_nodes": _device_nodes(units_of),
        "settings": settings,
        "env": _environment(settings, extra, base),
        "models": models,
        "warm": warm,
    }


def ollama_plan(gpus, host, config):
    _check_gpus(host, gpus, config)
    units = _units(gpus)
    shared = {
        "config": config,
        "settings": _check_settings(_where(host), "ollama_", config.get("settings", {})),
        "extra_env": _check_extra_env(_where(host), "ollama_extra_env", config.get("extra_env") or {}),
        "by": config.get("cuda_devices_by", "uuid"),
    }
    if shared["by"] not in ("uuid", "index"):
        raise PlanError(f"{_where(host)}, field ollama_cuda_devices_by: {shared['by']!r}; valid: uuid, index")
    if config.get("instances"):
        specs = _instances_from_config(host, units, gpus, config)
    else:
        specs = [({}, group) for group in _strategy_groups(host, units, config) if group]
    _check_overlaps(host, [(spec.get("name") or _auto_name(u), u) for spec, u in specs])
    ports, names = _Ports(host, config, specs), set()
    return [_instance(host, spec, units_of, names, ports, shared) for spec, units_of in specs]


def ollama_plan_table(plan, headroom=0.10):
    """The plan as text rows: instance, GPUs, VRAM, port, parallel, context, models, estimated use (every pinned
    model loaded at once) and what is left below the headroom (VRAM, est. and free in GiB).

    Takes the output of ollama_fit_check (or a bare plan: use then reads "?")."""
    header = ("instance", "GPUs", "VRAM", "port", "parallel", "context", "models", "est.", "free")
    rows = [header]
    for inst in plan:
        _, use = planned_use(inst)
        usable = inst["vram_total"] * (1 - headroom)
        rows.append(
            (
                inst["name"],
                inst["gpu_label"].replace("GPUs ", "").replace("GPU ", ""),
                _gib(inst["vram_total"]),
                str(inst["port"]),
                str(inst["settings"].get("num_parallel", "")),
                str(inst["settings"].get("context_length", "")) or "auto",
                ",".join(inst.get("models", [])) or "-",
                _gib(use) if use is not None else ("?" if inst.get("models") else "-"),
                _gib(usable - use) if use is not None else _gib(usable),
            )
        )
    return text_table(rows)


def _pinned_names(where, models):
    """An instance's models by the name Ollama shows for them (model_names.display), each once."""
    names = {}
    for model in models:
        try:
            name = model_names.parse(model)
        except model_names.InvalidModelName as exc:
            raise PlanError(f"{where}, field models: {exc}") from None
        if name.key in names:
            raise PlanError(
                f"{where}, field models: {model!r} and {names[name.key]!r} are one model to Ollama "
                "(it compares names ignoring case, with registry.ollama.ai/library/ and :latest implied); pin it once"
            )
        names[name.key] = name.display
    return list(names.values())


def model_name(name):
    """The name Ollama shows for a model (model_names.display): llama3.1 and library/llama3.1 are llama3.1:latest."""
    return model_names.display(name)


def model_key(name):
    """A model's identity, the same for every spelling Ollama takes as that model: compare models by it."""
    return model_names.key(name)


def ollama_beyond_loopback(listen_addresses):
    """The addresses others than the host itself can reach (wildcards included): what the firewall must guard."""
    return [address for address in listen_addresses if not addresses.is_loopback(address)]


def ollama_address_is_local(address):
    """Whether ADDRESS is a wildcard or loopback: one the host reaches itself by loopback."""
    return addresses.is_wildcard(address) or addresses.is_loopback(address)


def ollama_local_address(address):
    """Where the host itself reaches a listener on ADDRESS (a wildcard by loopback), bracketed where IPv6."""
    return addresses.local_address(address)


def ollama_models_in(names, others):
    """NAMES (as written) that are one model with any of OTHERS to Ollama: select('in', ...) by model_key."""
    keys = {model_key(other) for other in others}
    return [name for name in names if model_key(name) in keys]


def instance_url(instance):
    """Where the host itself reaches an instance (0.0.0.0 and :: mean every address, loopback included)."""
    return addresses.local_url(instance["address"], instance["port"])


def ollama_model_sources(plan):
    """Each pinned model once, with the first instance that pins it: the shared store needs one pull."""
    sources = {}
    for instance in plan:
        for model in instance.get("models", []):
            sources.setdefault(
                model_key(model),
                {"model": model, "key": model_key(model), "instance": instance["name"], "url": instance_url(instance)},
            )
    return list(sources.values())


def ollama_models_from_api(shows, tags):
    """{model: {model_info, size, capabilities, source: ollama}} for the fit check, from /api/show results (uri loop) and
    /api/tags."""
    sizes = {model_key(m["name"]): m["size"] for m in tags.get("models", [])}
    return {
        model_name(r["item"]["model"]): {
            "model_info": r["json"]["model_info"],
            "size": sizes[model_key(r["item"]["model"])],
            "capabilities": r["json"].get("capabilities", ["completion"]),
            "source": "ollama",
        }
        for r in shows
        if r.get("status") == 200
        and isinstance(r.get("json"), dict)
        and "model_info" in r["json"]
        and model_key(r["item"]["model"]) in sizes
    }


class FilterModule:
    def filters(self):
        return {
            "ollama_plan": ollama_plan,
            "ollama_plan_table": ollama_plan_table,
            "ollama_model_sources": ollama_model_sources,
            "ollama_models_from_api": ollama_models_from_api,
            "ollama_instance_url": instance_url,
            "ollama_model_name": model_name,
            "ollama_model_key": model_key,
            "ollama_models_in": ollama_models_in,
            "ollama_beyond_loopback": ollama_beyond_loopback,
            "ollama_local_address": ollama_local_address,
            "ollama_address_is_local": ollama_address_is_local,
        }
