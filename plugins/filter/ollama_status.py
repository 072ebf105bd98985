"""The fleet as it runs: each planned instance next to what its host, its API and the gateways report."""

import json
import math
import re
from datetime import datetime

from ansible.errors import AnsibleFilterError
from ansible_collections.ollama.fleet.plugins.module_utils.model_names import key
from ansible_collections.ollama.fleet.plugins.module_utils.plan import planned_use
from ansible_collections.ollama.fleet.plugins.module_utils.report import gib as _gib
from ansible_collections.ollama.fleet.plugins.module_utils.report import text_table


def _json(result):
    """The JSON of a uri result that answered 200, else None."""
    if isinstance(result, dict) and result.get("status") == 200 and isinstance(result.get("json"), dict):
        return result["json"]
    return None


def _why(result):
    if not isinstance(result, dict):
        return "not probed"
    if result.get("status", -1) == -1:
        # uri's msg: "Status code was -1 …: Request failed: <urlopen error [Errno 111] Connection refused>"
        reason = re.search(r"(?:\] |error )([^<>\]]+)>?$", result.get("msg") or "")
        return reason.group(1).strip().lower() if reason else "no answer"
    return f"HTTP {result['status']}"


def _gateway_view(gateway, host, instance):
    """What one gateway reports of one instance, or None when the gateway does not balance it."""
    status = gateway.get("_ollama_gateway_status") or {}
    for backend in status.get("backends", []):
        if backend["host"] == host and backend["instance"] == instance:
            target = f"{backend['address']}:{backend['port']}"
            health = {(i["host"], i["instance"]): i["up"] for i in (status.get("healthz") or {}).get("instances", [])}
            reasons = sorted(m.rsplit("@", 1)[1] for m in status.get("drained", []) if m.rsplit("@", 1)[0] == target)
            recent = (status.get("recent") or {}).get(f"{host}/{instance}", {})
            return {
                "gateway": gateway["inventory_hostname"],
                "target": target,
                "up": health.get((host, instance)),
                "drained": reasons,
                "connections": int(status.get("connections", {}).get(target, 0)),
                # 0 when the log was read and names no request of it; None without a log
                "requests_per_second": recent.get("requests_per_second", 0.0)
                if status.get("recent") is not None
                else None,
                "ttft_p95": recent.get("ttft_p95"),
            }
    return None


def ollama_gateway_recent(lines, read, minutes=5):
    """What a gateway's request log says of each instance lately: LINES is the gateway's clock (date +%s), then
    the log's last lines, at most READ of them (the tail status.yml asked for). Over the last MINUTES, or over
    the lines there are when they cover less (a busy gateway): {"HOST/INSTANCE": {requests, requests_per_second,
    ttft_p95 (seconds, nearest rank; None without a stream)}}. An instance without requests has none (0 req/s)."""
    if not lines:
        return {}
    now = int(lines[0])
    start = now - minutes * 60
    entries, oldest = [], now
    for line in lines[1:]:
        try:
            entry = json.loads(line)
            at = datetime.fromisoformat(entry["time"]).timestamp()
        except (ValueError, KeyError, TypeError):
            continue  # a line cut by the tail, or written by an older log format
        oldest = min(oldest, at)
        if at >= start and entry.get("host"):
            entries.append(entry)
    # a full tail that starts inside the window covers only its own span
    span = now - max(start, oldest) if len(lines) - 1 >= read else now - start
    span = max(span, 1)
    recent = {}
    for entry in entries:
        view = recent.setdefault(f"{entry['host']}/{entry['ollama_instance']}", {"requests": 0, "ttft": []})
        view["requests"] += 1
        if entry.get("ttft"):
            view["ttft"].append(float(entry["ttft"]))
    for view in recent.values():
        ttft = sorted(view.pop("ttft"))
        view["requests_per_second"] = round(view["requests"] / span, 3)
        view["ttft_p95"] = ttft[math.ceil(0.95 * len(ttft)) - 1] if ttft else None
    return recent


def _models(instance, ps):
    """Loaded models from /api/ps, with the plan's share of the VRAM where the model is pinned (planned_use);
    pinned models not loaded."""
    # /api/ps names a model as the store does, the plan as the inventory: one model to Ollama by its key
    estimates = {key(name): use for name, use in planned_use(instance)[0].items()}
    pinned = {key(name) for name in instance.get("models", [])}
    models = []
    for m in (ps or {}).get("models", []):
        name = m.get("name") or m.get("model")
        models.append(
            {
                "name": name,
                "loaded": True,
                "size": int(m.get("size", 0)),
                "size_vram": int(m.get("size_vram", 0)),
                "context_length": m.get("context_length"),
                "estimate": estimates.get(key(name)),
                "pinned": key(name) in pinned,
            }
        )
    loaded = {key(m["name"]) for m in models}
    for name in instance.get("models", []):
        if key(name) not in loaded:
            models.append(
                {
                    "name": name,
                    "loaded": False,
                    "size": 0,
                    "size_vram": 0,
                    "context_length": None,
                    "estimate": estimates.get(key(name)),
                    "pinned": True,
                }
            )
    return models


def _row(host, instance, **fields):
    """A status row; what was not seen stays empty."""
    row = {
        "host": host,
        "instance": instance,
        "port": None,
        "gpus": [],
        "gpu_label": "-",
        "vram_total": 0,
        "settings": {},
        "slots": {},
        "unit": "unknown",
        "enabled": "unknown",
        "version": None,
        "models": [],
        "together": None,
        "gateways": [],
        "problems": [],
    }
    row.update(fields)
    return row


def _problems(row, version_probe):
    """What is wrong with an instance's ROW: its unit, its API, CPU spill, and what its gateways see."""
    problems = []
    if row["unit"] != "running":
        problems.append(f"unit ollama@{row['instance']}.service is {row['unit']}")
    if _json(version_probe) is None:
        problems.append(f"API on port {row['port']} does not answer ({_why(version_probe)})")
    for m in row["models"]:
        if m["loaded"] and m["size_vram"] < m["size"]:
            share = round(100 * (m["size"] - m["size_vram"]) / m["size"]) if m["size"] else 0
            problems.append(f"{m['name']} spills {share}% to system memory (CPU)")
    for view in row["gateways"]:
        if "health" in view["drained"]:
            problems.append(f"gateway {view['gateway']} holds it out after failed health probes")
        elif view["up"] is False:
            problems.append(f"gateway {view['gateway']} cannot reach {view['target']}")
    return problems


def _planned_row(host, instance, service, probe, gateways):
    """The row of a planned INSTANCE from its unit (SERVICE), its API (PROBE: version and ps) and the gateways."""
    name = instance["name"]
    version = _json(probe.get("version"))
    row = _row(
        host,
        name,
        port=instance["port"],
        gpus=instance["gpus"],
        gpu_label=instance["gpu_label"],
        vram_total=instance["vram_total"],
        settings=instance["settings"],
        slots={f["model"]: f["slots"] for f in instance.get("fit", []) if "slots" in f},
        unit=service.get("state", "absent"),
        enabled=service.get("status", "absent"),
        version=version.get("version") if version else None,
        models=_models(instance, _json(probe.get("ps"))),
        together=planned_use(instance)[1] if len(instance.get("models", [])) > 1 else None,
        gateways=[v for g in gateways if (v := _gateway_view(g, host, name))],
    )
    row["problems"] += _problems(row, probe.get("version"))
    return row


def _host_rows(hv, gateways):
    """The rows of one GPU host: its planned instances, then instances on it the plan no longer has."""
    host, status = hv["inventory_hostname"], hv.get("ollama_status_report")
    if status is None:
        return [
            _row(
                host,
                "-",
                problems=["host unreachable or its status could not be read (see the task that failed above)"],
            )
        ]
    services, probes = status.get("services", {}), {}
    for kind in ("version", "ps"):
        for result in status.get(kind, []):
            probes.setdefault(result["__instance"]["name"], {})[kind] = result
    planned = hv.get("ollama_plan", [])
    rows = [
        _planned_row(host, i, services.get(f"ollama@{i['name']}.service", {}), probes.get(i["name"], {}), gateways)
        for i in planned
    ]
    for name in sorted(set(status.get("env_instances", [])) - {i["name"] for i in planned}):
        service = services.get(f"ollama@{name}.service", {})
        rows.append(
            _row(
                host,
                name,
                unit=service.get("state", "absent"),
                enabled=service.get("status", "absent"),
                problems=["not in the plan (site.yml removes it)"],
            )
        )
    return rows


def ollama_status(gpu_hosts, gateways=()):
    if not isinstance(gpu_hosts, list):
        raise AnsibleFilterError("ollama_status: expects the hostvars of the GPU hosts as a list")
    return [row for hv in gpu_hosts for row in _host_rows(hv, gateways)]


def _gateway_cell(views):
    if not views:
        return "-"
    cells = []
    for v in views:
        state = "up" if v["up"] else "DOWN" if v["up"] is False else "?"
        if v["drained"]:
            state = "drained(" + ",".join(v["drained"]) + ")"
        cell = f"{state}, {v['connections']} conn"
        if v.get("requests_per_second") is not None:
            cell += f", {v['requests_per_second']:.2f} req/s"
        if v.get("ttft_p95") is not None:
            cell += f", TTFT p95 {v['ttft_p95']:.2f} s"
        cells.append(cell)
    return "; ".join(cells)


def _model_cell(model):
    if not model["loaded"]:
        return f"{model['name']} not loaded" + (f" est {_gib(model['estimate'])}" if model["estimate"] else "")
    cell = f"{model['name']} {_gib(model['size_vram'])}/{_gib(model['size'])}"
    if model["estimate"]:
        cell += f" est {_gib(model['estimate'])}"
    if model["size_vram"] < model["size"]:
        cell += " CPU-SPILL"
    return cell


def _slots_cell(row):
    """The instance's num_parallel, and the pinned models Ollama gives fewer slots (model=1)."""
    parallel = row["settings"].get("num_parallel")
    if parallel is None:
        return "-"
    fewer = [f"{m}={n}" for m, n in sorted(row["slots"].items()) if n != parallel]
    return str(parallel) + (f" ({', '.join(fewer)})" if fewer else "")


def ollama_status_table(rows):
    """Rows as text: host, instance, unit, port, GPUs (index:UUID prefix), version, slots (num_parallel, and
    pinned models Ollama runs with fewer), models with VRAM in GiB (in VRAM / loaded, and the plan's share of the
    VRAM; then = the instance's total for its pinned models together where it pins several),
    the gateways' view (state and connections), and problems."""
    header = (
        "host",
        "instance",
        "unit",
        "port",
        "GPUs",
        "version",
        "slots",
        "models (GiB in VRAM/loaded, est.)",
        "gateway (conns)",
        "ok",
    )
    lines = [header]
    for row in rows:
        gpus = ",".join(f"{g['index']}:{g['uuid'][:12]}" for g in row["gpus"]) or "-"
        models = " | ".join(_model_cell(m) for m in row["models"]) or "-"
        if row["together"]:
            models += f" = est {_gib(row['together'])} together"
        lines.append(
            (
                row["host"],
                row["instance"],
                row["unit"],
                str(row["port"] or "-"),
                gpus,
                row["version"] or "-",
                _slots_cell(row),
                models,
                _gateway_cell(row["gateways"]),
                "ok" if not row["problems"] else "PROBLEM",
            )
        )
    table = text_table(lines)
    problems = ollama_status_problems(rows)
    return table + (["problems:"] + problems if problems else [f"all {len(rows)} instances ok"])


def ollama_status_problems(rows):
    """Every problem as "host/instance: what"."""
    return [f"{r['host']}/{r['instance']}: {p}" for r in rows for p in r["problems"]]


# Instance colours: distinct on screen and in print, for up to 10 groups per host, then repeated.
PALETTE = ("#4e79a7", "#f28e2b", "#59a14f", "#b07aa1", "#edc948", "#76b7b2", "#ff9da7", "#9c755f", "#e15759", "#bab0ac")


def _devices(gpus):
    """What the plan can give an instance, as drawn: whole GPUs, or the MIG devices of a GPU in MIG mode."""
    devices = []
    for gpu in gpus:
        if gpu.get("mig_mode"):
            for mig in gpu.get("mig_devices", []):
                devices.append(dict(mig, label=f"MIG {gpu['index']}/{mig['index']}", model=gpu.get("name", "")))
        else:
            devices.append(dict(gpu, label=f"GPU {gpu['index']}", model=gpu.get("name", "")))
    return devices


def _pct(part, whole):
    return round(100 * part / whole, 2) if whole else 0


def _device_views(hv, plan, colour):
    """The host's GPUs and MIG devices, each sized by its memory and coloured by the instance that has it."""
    owner = {g["uuid"]: inst["name"] for inst in plan for g in inst["gpus"]}
    return [
        {
            "label": d["label"],
            "model": d["model"],
            "uuid": d["uuid"],
            "memory": d["memory_total"],
            "gib": _gib(d["memory_total"]),
            "instance": owner.get(d["uuid"], ""),
            "colour": colour.get(owner.get(d["uuid"]), "#d9d9d9"),
        }
        for d in _devices(hv.get("ollama_gpus_found") or [])
    ]


def _model_bar(model, vram_total):
    """A model's bars against its instance's VRAM: the plan's estimate, what is loaded, and any CPU spill."""
    size, vram = model.get("size", 0), model.get("size_vram", 0)
    return {
        "name": model["name"],
        "estimate_gib": _gib(model["estimate"]) if model.get("estimate") else None,
        "estimate_pct": min(100, _pct(model.get("estimate") or 0, vram_total)),
        "loaded": model.get("loaded"),
        "vram_gib": _gib(vram),
        "vram_pct": min(100, _pct(vram, vram_total)),
        "spill_gib": _gib(size - vram),
        "spill": size > vram,
    }


def _instance_view(inst, row, colour, room):
    """An instance as the picture draws it; with its status ROW (or None: the plan alone) what runs."""
    estimates, total = planned_use(inst)
    models = (
        row["models"] if row else [{"name": m, "loaded": None, "estimate": estimates.get(m)} for m in inst["models"]]
    )
    settings = inst["settings"]
    status = (
        {"unit": row["unit"], "version": row["version"], "gateways": _gateway_cell(row["gateways"])} if row else None
    )
    return {
        "name": inst["name"],
        "colour": colour,
        "port": inst["port"],
        "gpu_label": inst["gpu_label"],
        "gib": _gib(inst["vram_total"]),
        # every pinned model loaded at once, with the reserve (the plan's check of them together)
        "together_gib": _gib(total) if len(inst.get("models", [])) > 1 and total else None,
        "settings": [
            f"parallel {settings.get('num_parallel', '?')}",
            f"context {settings.get('context_length') or 'auto'}",
            f"flash attention {'on' if settings.get('flash_attention') else 'off'}",
            f"KV {settings.get('kv_cache_type', 'f16')}",
            f"keep alive {settings.get('keep_alive', '5m')}",
        ],
        "usable_pct": _pct(1 - room, 1),
        "status": dict(status, problems=row["problems"]) if row else None,
        "models": [_model_bar(m, inst["vram_total"]) for m in models],
    }


def ollama_fleet_view(gpu_hosts, rows=None, headroom=None):
    """Per host what the fleet picture draws: devices sized by memory and coloured by instance, and per
    instance its port, settings and models as bars (estimate, and with rows from ollama_status what is
    loaded) against the instance's VRAM and the fit check's headroom."""
    by_instance = {(r["host"], r["instance"]): r for r in rows or []}
    hosts = []
    for hv in gpu_hosts:
        host, plan = hv["inventory_hostname"], hv.get("ollama_plan") or []
        room = float(hv.get("ollama_fit_headroom", 0.10) if headroom is None else headroom)
        colour = {inst["name"]: PALETTE[n % len(PALETTE)] for n, inst in enumerate(plan)}
        devices = _device_views(hv, plan, colour)
        instances = [
            _instance_view(inst, by_instance.get((host, inst["name"])), colour[inst["name"]], room) for inst in plan
        ]
        hosts.append(
            {
                "host": host,
                "source": hv.get("ollama_gpus_source", ""),
                "headroom_pct": _pct(room, 1),
                "gib": _gib(sum(d["memory"] for d in devices)),
                "devices": devices,
                "instances": instances,
            }
        )
    return hosts


class FilterModule:
    def filters(self):
        return {
            "ollama_status": ollama_status,
            "ollama_status_table": ollama_status_table,
            "ollama_status_problems": ollama_status_problems,
            "ollama_fleet_view": ollama_fleet_view,
            "ollama_gateway_recent": ollama_gateway_recent,
        }
