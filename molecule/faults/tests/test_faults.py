"""Faults under a steady mixed load through the gateway. Each case records what happened in
.cache/faults/results.json (tests/faults_report.py turns it into the table of docs/reliability.md).

Bounded: every load stops by itself (time and request count); traffic goes only to the test hosts."""

import json
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest
from helpers.fleet import host, rotation, site
from helpers.load import Load
from helpers.waiting import seconds_until

REPO = Path(__file__).resolve().parents[3]

GATEWAY = "http://10.213.0.33:11434"
MODEL = "qwen3:0.6b"
RESULTS = REPO / ".cache" / "faults" / "results.json"
GPU1, GPU2, GW = "olt-ft-gpu1", "olt-ft-gpu2", "olt-ft-gw"
# keeps every later site.yml run from changing instance settings back and forth
STEADY = {"ollama_keep_alive": "10m", "ollama_gateway_retry_after": 3}


def record(case, happened, load, **counts):
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    results = json.loads(RESULTS.read_text()) if RESULTS.exists() else {}
    results[case] = {
        "happened": happened,
        "requests": len(load.outcomes),
        "ok": load.count("ok"),
        "failed": load.count("failed"),
        "cut": load.count("cut"),
        "hung": load.count("hung"),
        **counts,
    }
    RESULTS.write_text(json.dumps(results, indent=2))


def healthy():
    """Every instance answers and none is held out: a mark a test's site.yml run left behind would hold an
    instance out for the rest of the suite (every one held out: the load of each later case got only 502s)."""
    seen = rotation(GW)
    return seen["health"].get("up") == seen["health"].get("total") == 4 and not seen["marks"]


@pytest.fixture(scope="module", autouse=True)
def fresh_results():
    RESULTS.unlink(missing_ok=True)
    seconds_until(healthy, 60, "every instance up")


def test_kill_9_of_an_instance():
    gpu1 = host(GPU1)
    with Load(GATEWAY, MODEL, workers=4) as load:
        time.sleep(2)
        # the main process, by its PID: `systemctl kill` also signals the unit's cgroup, which some kernels
        # answer with "Input/output error" for processes already gone
        gpu1.check_output("kill -KILL $(systemctl show -p MainPID --value ollama@a.service)")
        killed = time.monotonic()  # once the command has returned: whatever starts from here meets it dead
        back = seconds_until(
            lambda: gpu1.run("curl -sf -m 1 http://10.213.0.31:11435/api/version").rc == 0, 30, "the instance answering"
        )
        time.sleep(2)
    late = [o for o in load.outcomes if o.started > killed + 0.1 and o.result != "ok"]
    cut = load.count("cut") + load.count("failed")
    record(
        "kill -9 of one instance",
        f"systemd restarted it, ready again in {back:.1f} s; requests started after "
        f"the kill all served by the others; {cut} in flight on it ended with an error",
        load,
        ready_s=round(back, 1),
        failed_after_kill=len(late),
    )
    assert late == [] and load.count("hung") == 0
    assert cut <= 2  # at most its OLLAMA_NUM_PARALLEL requests were on it


def test_rolling_change_of_a_setting_on_every_instance():
    before = {
        n: host(n).check_output("systemctl show -p ActiveEnterTimestampMonotonic --value ollama@a ollama@b")
        for n in (GPU1, GPU2)
    }
    with Load(GATEWAY, MODEL, workers=4) as load:
        run = site(STEADY)
    assert run.returncode == 0, run.stdout[-3000:]
    restarted = sum(
        len(
            set(before[n].split())
            - set(
                host(n)
                .check_output("systemctl show -p ActiveEnterTimestampMonotonic --value ollama@a ollama@b")
                .split()
            )
        )
        for n in (GPU1, GPU2)
    )
    record(
        "rolling change of OLLAMA_KEEP_ALIVE on all instances",
        f"{restarted} instances restarted one at a time, each drained from the gateway first",
        load,
        restarted=restarted,
    )
    assert restarted == 4
    assert load.count("failed") + load.count("cut") + load.count("hung") == 0


def test_reboot_of_a_gpu_host():
    harness = REPO / "tests" / "harness" / "nspawn.py"
    with Load(GATEWAY, MODEL, workers=4) as load:
        time.sleep(1)
        started = time.monotonic()
        subprocess.run([sys.executable, str(harness), "reboot", GPU2], check=True, capture_output=True)
        seconds_until(healthy, 90, "every instance up")
        recovered = time.monotonic() - started
        time.sleep(2)
    gpu2 = host(GPU2)
    for name in ("a", "b"):
        unit = gpu2.service(f"ollama@{name}")
        assert unit.is_enabled and unit.is_running
    assert gpu2.service("ollama-firewall").is_enabled
    lost = load.count("failed") + load.count("cut")
    record(
        "reboot of a GPU host",
        f"back with every unit enabled and ready, gateway sees 4/4 up after {recovered:.1f} s, no playbook run",
        load,
        recovered_s=round(recovered, 1),
    )
    assert load.count("hung") == 0 and lost <= 4  # only what was in flight on its 4 slots


def test_gateway_configuration_change_under_load():
    with Load(GATEWAY, MODEL, workers=4) as load:
        run = site(dict(STEADY, ollama_gateway_retry_after=4))
    assert run.returncode == 0, run.stdout[-3000:]
    assert "Retry-After $ollama_gateway_retry_after" in host(GW).check_output(
        "cat /etc/nginx/conf.d/ollama-gateway.conf"
    )
    record("gateway configuration change (reload)", "nginx -t, then reload; streams in flight kept going", load)
    assert load.count("failed") + load.count("cut") + load.count("hung") == 0


def remove_last_gpu(gpu):
    gpu.check_output("cp /etc/nvidia-sim/gpus.json /etc/nvidia-sim/gpus.json.full")
    gpu.check_output(
        "python3 -c \"import json; p='/etc/nvidia-sim/gpus.json'; s=json.load(open(p)); s['gpus'].pop(); "
        "json.dump(s, open(p, 'w'))\""
    )


def test_a_gpu_disappears():
    from helpers.fleet import snapshot

    gpu1 = host(GPU1)
    before = snapshot([GPU1, GPU2, GW])
    remove_last_gpu(gpu1)
    try:
        with Load(GATEWAY, MODEL, workers=2, max_requests=400) as load:
            explicit = site(dict(STEADY, ollama_gateway_retry_after=4))
            unchanged = snapshot([GPU1, GPU2, GW]) == before
            adapted = site(
                dict(
                    STEADY,
                    ollama_gateway_retry_after=4,
                    ollama_instances=[],
                    ollama_gpu_strategy="fixed",
                    ollama_gpu_group_size=4,
                )
            )
            units = gpu1.check_output("systemctl list-units --no-legend --plain 'ollama@*' | awk '{print $1}'").split()
    finally:
        gpu1.check_output("mv /etc/nvidia-sim/gpus.json.full /etc/nvidia-sim/gpus.json")
        restored = site(dict(STEADY, ollama_gateway_retry_after=4))
    message = re.sub(r"\s+", " ", explicit.stdout + explicit.stderr)
    record(
        "a GPU disappears",
        "explicit groups: stopped in the check, naming the GPU, nothing changed; "
        f"strategy fixed/4: re-planned to {', '.join(u.split('@')[1].split('.')[0] for u in units)}",
        load,
        explicit_failed=explicit.returncode != 0,
        hosts_unchanged=unchanged,
    )
    assert explicit.returncode != 0
    assert "host olt-ft-gpu1, instance 'b', field gpus: GPU 7 does not exist on this host" in message
    assert unchanged, "a failed plan must not change any host"
    assert adapted.returncode == 0, adapted.stdout[-3000:]
    assert units == ["ollama@gpu0-3.service", "ollama@gpu4-6.service"]
    assert restored.returncode == 0 and seconds_until(healthy, 60, "every instance up") >= 0


# Another process takes all but 100 MiB of what llama.cpp may use on GPUs 0-3 (instance a of GPU1).
CROWD_GPUS = (
    "python3 -c \"import json; p='/etc/nvidia-sim/gpus.json'; s=json.load(open(p)); "
    "[g.update(memory_used=g['memory_total'] - 1124 * 2**20) for g in s['gpus'][:4]]; json.dump(s, open(p, 'w'))\""
)


def test_a_model_that_spills_to_the_cpu_stops_site():
    """The plan fits (it budgets the GPUs' total memory), but the instance finds its GPUs nearly full and
    loads the model partly on the CPU: site.yml's proof after the warm-up must stop, naming the instance."""
    gpu1 = host(GPU1)
    gpu1.check_output("cp /etc/nvidia-sim/gpus.json /etc/nvidia-sim/gpus.json.full")
    gpu1.check_output(CROWD_GPUS)
    try:
        gpu1.check_output("systemctl restart ollama@a.service")  # the stand-in reads the GPUs' use at start
        with Load(GATEWAY, MODEL, workers=2, max_requests=300) as load:
            spilled = site(STEADY)
    finally:
        gpu1.check_output("mv /etc/nvidia-sim/gpus.json.full /etc/nvidia-sim/gpus.json")
        gpu1.check_output("systemctl restart ollama@a.service")
        restored = site(STEADY)
    # one line however the callback folds or quotes it (YAML doubles the quotes around 'a')
    message = re.sub(r"\s+", " ", spilled.stdout + spilled.stderr).replace("''", "'")
    miss = re.search(
        r"host olt-ft-gpu1, instance 'a' \(GPUs 0-3\): qwen3:0.6b has ([\d.]+) of ([\d.]+) GiB in VRAM", message
    )
    record(
        "a model spills to the CPU (GPUs taken by another process)",
        "site.yml stopped after the warm-up, naming instance, model and GiB in VRAM"
        + (f" ({miss.group(1)} of {miss.group(2)} GiB)" if miss else ""),
        load,
        site_failed=spilled.returncode != 0,
    )
    assert spilled.returncode != 0
    assert miss and float(miss.group(1)) < float(miss.group(2)), message[-3000:]
    assert "nvidia-smi --query-compute-apps" in message and "instance 'b'" not in message
    assert "Traceback" not in message
    assert restored.returncode == 0, restored.stdout[-3000:]
    assert seconds_until(healthy, 60, "every instance up") >= 0


def test_a_hung_instance_leaves_the_rotation():
    gpu2, gw = host(GPU2), host(GW)
    pid = gpu2.check_output("systemctl show -p MainPID --value ollama@b.service")
    mark = "/run/ollama-gateway/drained/10.213.0.32:11436@health"
    with Load(GATEWAY, MODEL, workers=4, timeout=30) as load:
        time.sleep(1)
        gpu2.check_output(f"kill -STOP {pid}")
        stopped = time.monotonic()
        try:
            out = seconds_until(lambda: gw.file(mark).exists, 30, "the instance held out")
            time.sleep(4)
        finally:
            gpu2.check_output(f"kill -CONT {pid}")  # whatever failed: the next tests need it running
        back = seconds_until(lambda: not gw.file(mark).exists, 30, "the instance back in rotation")
        time.sleep(1)
    # the drain tool makes the mark first, then tests the upstreams and reloads nginx: a request started in
    # that second or two may still go to the stopped instance; one started after it may not
    after = [o for o in load.outcomes if o.started > stopped + out + 3]
    late = [o for o in after if o.result != "ok"]
    record(
        "an instance hangs (SIGSTOP, port kept)",
        f"out of the rotation after {out:.1f} s (probe every 1 s, "
        f"timeout 1 s, 2 misses), back {back:.1f} s after it resumed",
        load,
        out_s=round(out, 1),
        failed_after_out=len(late),
    )
    # served after it left (a load that ran out of requests early, on 502s, proves nothing)
    assert out <= 10 and after and late == []


def test_rolling_upgrade_of_ollama_under_load():
    import build_archive

    archive = build_archive.build("0.33.1", REPO / ".cache" / "artifacts" / "release-0.33.1")
    gw = host(GW)
    with Load(GATEWAY, MODEL, workers=4) as load:
        run = site(dict(STEADY, ollama_gateway_retry_after=4, ollama_version="0.33.1", ollama_archive_src=str(archive)))
    assert run.returncode == 0, run.stdout[-3000:]
    versions = {
        b: gw.check_output(f"curl -sf http://{b}/api/version")
        for b in (
            f"{i['address']}:{i['port']}"
            for i in json.loads(gw.check_output("cat /etc/nginx/ollama-gateway/fleet.json"))["instances"]
        )
    }
    record(
        "rolling upgrade 0.33.0 → 0.33.1",
        f"{len(versions)} instances upgraded one at a time, each drained first and ready before the next",
        load,
        upgraded=len(versions),
    )
    assert set(versions.values()) == {'{"version":"0.33.1"}'}
    assert load.count("failed") + load.count("cut") + load.count("hung") == 0
