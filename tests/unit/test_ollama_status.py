"""ollama_status: each planned instance next to what systemd, its API and the gateways report."""

import json
from datetime import UTC, datetime

import pytest
from ollama_gateway import ollama_gateway_connections
from ollama_status import (
    ollama_fleet_view,
    ollama_gateway_recent,
    ollama_status,
    ollama_status_problems,
    ollama_status_table,
)

GIB = 2**30
GPU = {"index": 0, "uuid": "GPU-11111111-2222-3333-4444-555555555555", "name": "NVIDIA L20", "memory_total": 48 * GIB}


def instance(name, port, gpus, models=()):
    return {
        "host": "gpu1",
        "name": name,
        "port": port,
        "address": "127.0.0.1",
        "gpus": gpus,
        "gpu_label": f"GPU {gpus[0]['index']}",
        "vram_total": sum(g["memory_total"] for g in gpus),
        "settings": {"num_parallel": 2, "context_length": 8192, "flash_attention": True},
        "models": list(models),
        "fit": [{"model": m, "status": "fits", "estimate": {"total": 10 * GIB}} for m in models],
    }


def answer(json_body):
    return {"status": 200, "json": json_body}


REFUSED = {
    "status": -1,
    "msg": "Status code was -1 and not [200]: Request failed: <urlopen error [Errno 111] Connection refused>",
}


def gpu_host(services, version, ps, env_instances=("a", "b")):
    gpu2 = dict(GPU, index=1, uuid="GPU-99999999-2222-3333-4444-555555555555")
    plan = [instance("a", 11435, [GPU], ["llama3.1:8b"]), instance("b", 11436, [gpu2])]
    return {
        "inventory_hostname": "gpu1",
        "ollama_plan": plan,
        "ollama_gpus_found": [GPU, gpu2],
        "ollama_gpus_source": "nvml",
        "ollama_fit_headroom": 0.1,
        "ollama_status_report": {
            "services": services,
            "env_instances": list(env_instances),
            "version": [dict(version[i], __instance=p) for i, p in enumerate(plan)],
            "ps": [dict(ps[i], __instance=p) for i, p in enumerate(plan)],
        },
    }


RUNNING = {
    "ollama@a.service": {"state": "running", "status": "enabled"},
    "ollama@b.service": {"state": "running", "status": "enabled"},
}
LOADED = {"models": [{"name": "llama3.1:8b", "size": 9 * GIB, "size_vram": 9 * GIB, "context_length": 8192}]}


def gateway(drained=(), up=(True, True), connections=None, recent=None):
    backends = [
        {"host": "gpu1", "instance": "a", "address": "127.0.0.1", "port": 11435},
        {"host": "gpu1", "instance": "b", "address": "127.0.0.1", "port": 11436},
    ]
    return {
        "inventory_hostname": "gw",
        "_ollama_gateway_status": {
            "backends": backends,
            "healthz": {"instances": [{"host": "gpu1", "instance": n, "up": u} for n, u in zip("ab", up, strict=True)]},
            "drained": list(drained),
            "connections": connections or {},
            "recent": recent,
        },
    }


def test_healthy_fleet_has_no_problem():
    hv = gpu_host(RUNNING, [answer({"version": "0.33.0"})] * 2, [answer(LOADED), answer({"models": []})])
    rows = ollama_status([hv], [gateway(connections={"127.0.0.1:11435": 3})])
    assert [(r["instance"], r["unit"], r["version"], r["problems"]) for r in rows] == [
        ("a", "running", "0.33.0", []),
        ("b", "running", "0.33.0", []),
    ]
    assert rows[0]["models"][0] == {
        "name": "llama3.1:8b",
        "loaded": True,
        "size": 9 * GIB,
        "size_vram": 9 * GIB,
        "context_length": 8192,
        "estimate": 10 * GIB,
        "pinned": True,
    }
    assert rows[0]["gateways"] == [
        {
            "gateway": "gw",
            "target": "127.0.0.1:11435",
            "up": True,
            "drained": [],
            "connections": 3,
            "requests_per_second": None,  # no request log read
            "ttft_p95": None,
        }
    ]
    table = ollama_status_table(rows)
    assert table[1].split()[:6] == ["gpu1", "a", "running", "11435", "0:GPU-11111111", "0.33.0"]
    assert "llama3.1:8b 9.0/9.0 est 10.0" in table[1] and "up, 3 conn" in table[1]
    assert table[-1] == "all 2 instances ok"


def test_a_stopped_instance_is_down_everywhere_it_shows():
    services = dict(RUNNING, **{"ollama@b.service": {"state": "stopped", "status": "enabled"}})
    hv = gpu_host(services, [answer({"version": "0.33.0"}), REFUSED], [answer(LOADED), REFUSED])
    rows = ollama_status([hv], [gateway(drained=["127.0.0.1:11436@health"], up=(True, False))])
    assert ollama_status_problems(rows) == [
        "gpu1/b: unit ollama@b.service is stopped",
        "gpu1/b: API on port 11436 does not answer (connection refused)",
        "gpu1/b: gateway gw holds it out after failed health probes",
    ]
    assert "drained(health), 0 conn" in ollama_status_table(rows)[2]


def test_a_restart_drain_is_shown_not_counted():
    hv = gpu_host(RUNNING, [answer({"version": "0.33.1"})] * 2, [answer(LOADED)] * 2)
    rows = ollama_status([hv], [gateway(drained=["127.0.0.1:11435@restart"])])
    assert rows[0]["gateways"][0]["drained"] == ["restart"]
    assert ollama_status_problems(rows) == []


def test_cpu_spill_is_a_problem():
    spilled = {"models": [{"name": "llama3.1:8b", "size": 10 * GIB, "size_vram": 7 * GIB}]}
    hv = gpu_host(RUNNING, [answer({"version": "0.33.0"})] * 2, [answer(spilled), answer({"models": []})])
    rows = ollama_status([hv])
    assert ollama_status_problems(rows) == ["gpu1/a: llama3.1:8b spills 30% to system memory (CPU)"]
    assert "CPU-SPILL" in ollama_status_table(rows)[1]


def test_unplanned_instances_and_unreachable_hosts_are_reported():
    hv = gpu_host(RUNNING, [answer({"version": "0.33.0"})] * 2, [answer(LOADED)] * 2, env_instances=("a", "b", "old"))
    rows = ollama_status([hv, {"inventory_hostname": "gpu2"}])
    assert ollama_status_problems(rows) == [
        "gpu1/old: not in the plan (site.yml removes it)",
        "gpu2/-: host unreachable or its status could not be read (see the task that failed above)",
    ]


def test_pinned_model_not_loaded_is_listed_with_its_estimate():
    hv = gpu_host(RUNNING, [answer({"version": "0.33.0"})] * 2, [answer({"models": []})] * 2)
    (model,) = ollama_status([hv])[0]["models"]
    assert (model["name"], model["loaded"], model["estimate"]) == ("llama3.1:8b", False, 10 * GIB)


def test_fleet_view_colours_and_shares():
    hv = gpu_host(RUNNING, [answer({"version": "0.33.0"})] * 2, [answer(LOADED), answer({"models": []})])
    (view,) = ollama_fleet_view([hv], rows=ollama_status([hv]))
    a, b = view["devices"]
    assert (a["instance"], b["instance"]) == ("a", "b") and a["colour"] != b["colour"]
    (model,) = view["instances"][0]["models"]
    assert model["vram_pct"] == pytest.approx(100 * 9 / 48, abs=0.01)
    assert model["estimate_pct"] == pytest.approx(100 * 10 / 48, abs=0.01)
    assert view["instances"][0]["usable_pct"] == 90


def test_gateway_connections_count_nginx_peers_only():
    lines = [
        '0 0 127.0.0.1:40000 127.0.0.1:11435 users:(("nginx",pid=10,fd=3))',
        '0 0 127.0.0.1:40001 127.0.0.1:11435 users:(("nginx",pid=11,fd=3))',
        '0 0 127.0.0.1:11435 127.0.0.1:40000 users:(("ollama",pid=20,fd=7))',
        '0 0 10.0.0.1:40002 [fd00::5]:11436 users:(("nginx",pid=10,fd=4))',
        '0 0 10.0.0.1:22 10.0.0.9:5000 users:(("sshd",pid=1,fd=4))',
    ]
    assert ollama_gateway_connections(lines) == {"127.0.0.1:11435": 2, "fd00::5:11436": 1}


def test_fleet_view_draws_mig_devices_as_their_own_boxes():
    migs = [
        {"index": 0, "uuid": "MIG-aaaa", "memory_total": 40 * GIB},
        {"index": 1, "uuid": "MIG-bbbb", "memory_total": 20 * GIB},
    ]
    h100 = {
        "index": 0,
        "uuid": "GPU-h100",
        "name": "NVIDIA H100 80GB HBM3",
        "memory_total": 80 * GIB,
        "mig_mode": True,
        "mig_devices": migs,
    }
    plan = [instance("mig0-0", 11435, [dict(migs[0], mig=True)])]
    hv = {"inventory_hostname": "h1", "ollama_plan": plan, "ollama_gpus_found": [h100], "ollama_gpus_source": "nvml"}
    (view,) = ollama_fleet_view([hv])
    assert [(d["label"], d["gib"], d["instance"]) for d in view["devices"]] == [
        ("MIG 0/0", "40.0", "mig0-0"),
        ("MIG 0/1", "20.0", ""),
    ]
    assert view["devices"][1]["colour"] == "#d9d9d9"  # unassigned


def test_an_instance_pinning_several_models_shows_each_share_and_their_total():
    """Status and picture read the plan's check of the models together: each model's share of the VRAM, and the
    instance's total with the reserve (planned_use), not each model's estimate alone."""
    hv = gpu_host(RUNNING, [answer({"version": "0.33.0"})] * 2, [answer(LOADED), answer({"models": []})])
    a = hv["ollama_plan"][0]
    a["models"] = ["llama3.1:8b", "qwen3:0.6b"]
    a["fit"] = [{"model": m, "status": "fits", "estimate": {"total": 10 * GIB}} for m in a["models"]]
    shares = [{"model": "llama3.1:8b", "bytes": 8 * GIB, "gpus": [0]}, {"model": "qwen3:0.6b", "bytes": GIB}]
    a["together"] = {"status": "fits", "total": 10 * GIB, "shares": shares}
    rows = ollama_status([hv])
    assert [(m["name"], m["estimate"]) for m in rows[0]["models"]] == [("llama3.1:8b", 8 * GIB), ("qwen3:0.6b", GIB)]
    line = next(line for line in ollama_status_table(rows) if line.startswith("gpu1") and " a " in line)
    assert "llama3.1:8b 9.0/9.0 est 8.0 | qwen3:0.6b not loaded est 1.0 = est 10.0 together" in line
    (view,) = ollama_fleet_view([hv], rows=rows)
    assert view["instances"][0]["together_gib"] == "10.0" and view["instances"][1]["together_gib"] is None


def log_line(at: float, host="gpu1", instance="a", ttft=""):
    stamp = datetime.fromtimestamp(at, UTC).isoformat(timespec="seconds")
    return json.dumps({"time": stamp, "host": host, "ollama_instance": instance, "ttft": ttft, "status": 200})


def test_status_shows_each_instances_recent_requests_and_first_token_p95():
    """The gateway's clock, then its request log's tail: requests per second over 5 minutes and the 95th
    percentile of the streams' first tokens, per instance; older lines, refusals (no instance) and a line cut
    by the tail count for nothing; an instance the log does not name served 0 req/s."""
    now = 1_796_000_000
    lines = [str(now), '{"time": "2026-12', log_line(now - 400, ttft="9.0"), log_line(now - 10, host="")]
    lines += [log_line(now - 200 + n, ttft=f"{0.1 * (n + 1):.1f}") for n in range(20)]
    lines += [log_line(now - 5) for _ in range(10)]
    recent = ollama_gateway_recent(lines, 5000)
    assert recent == {"gpu1/a": {"requests": 30, "requests_per_second": 0.1, "ttft_p95": 1.9}}
    hv = gpu_host(RUNNING, [answer({"version": "0.33.0"})] * 2, [answer(LOADED), answer({"models": []})])
    rows = ollama_status([hv], [gateway(recent=recent)])
    table = ollama_status_table(rows)
    assert "up, 0 conn, 0.10 req/s, TTFT p95 1.90 s" in table[1]
    assert "up, 0 conn, 0.00 req/s" in table[2] and "TTFT" not in table[2]


def test_a_busy_gateways_tail_covers_its_own_span():
    """When the last lines all fall within the window, the rate is over the time they span."""
    now = 1_796_000_000
    read = 2000
    lines = [str(now)] + [log_line(now - 100 + n * 100 / read) for n in range(read)]
    assert ollama_gateway_recent(lines, read)["gpu1/a"]["requests_per_second"] == read / 100
    # fewer lines than asked for: the whole log, over the whole window
    assert ollama_gateway_recent(lines, read + 1)["gpu1/a"]["requests_per_second"] == round(read / 300, 3)
