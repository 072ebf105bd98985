"""Day 2 on the seeds' host (gateway on the same host): status.yml's table, exit code and picture, the
metrics Prometheus scrapes, uninstall.yml (twice) and site.yml restoring service after it."""

import json
from pathlib import Path

import pytest
from helpers import browser
from helpers.collection import galaxy_version
from helpers.day2 import (
    GATEWAY_PATHS,
    GPU_HOST_PATHS,
    footprint,
    left_behind,
    metrics,
    status_rows,
    units_left,
)
from helpers.fleet import MARKS, health, host, playbook, process_env, recap, site, wait_for_full_rotation
from helpers.ollama_client import call

REPO = Path(__file__).resolve().parents[3]

NAME = "olt-default-gpu1"
GATEWAY = "http://10.213.0.11:11434"
# instance → (port, GPU indices, pinned model), as in molecule.yml
PLAN = {
    "small": (11435, [0, 1], "llama3.1:8b"),
    "large": (11436, [2, 3, 4, 5, 6], "llama3.3:70b"),
    "solo": (11437, [7], "qwen3:0.6b"),
}
CONFIRM = {"ollama_uninstall_confirm": "yes"}


def healthz():
    return health(NAME)


@pytest.fixture(scope="module")
def gpus():
    """index → UUID as nvidia-smi on the host reports them."""
    csv = host(NAME).check_output("nvidia-smi --query-gpu=index,uuid --format=csv,noheader")
    return {int(i): u.strip() for i, u in (line.split(",") for line in csv.splitlines())}


def test_status_shows_every_instance_and_exits_0(gpus, tmp_path_factory):
    # earlier tests kill and restart instances: each back in rotation, then its pinned model loaded again, as
    # site.yml's warm-up does
    wait_for_full_rotation(NAME)
    for _port, _indices, model in PLAN.values():
        body = {"model": model, "prompt": "", "keep_alive": -1, "stream": False}
        assert call(f"{GATEWAY}/api/generate", body).status == 200
    # as after a reboot: no instance ever drained, so the drain tool has not made its marks directory
    emptied = host(NAME).run(f"rmdir {MARKS}")
    assert emptied.rc == 0, f"{emptied.stderr} (marks: {host(NAME).run(f'ls -A {MARKS}').stdout.split()})"
    picture = tmp_path_factory.mktemp("status") / "fleet.html"
    run = playbook("playbooks/status.yml", {"ollama_picture": str(picture)})
    assert run.returncode == 0, run.stdout[-3000:]
    assert "[WARNING]" not in run.stdout + run.stderr  # an operator reads a warning as a problem
    assert f"ollama.fleet {galaxy_version()}" in run.stdout  # which release of the toolkit answered
    rows = status_rows(run)
    assert sorted(rows) == [(NAME, name) for name in sorted(PLAN)]
    for name, (port, indices, model) in PLAN.items():
        unit, shown_port, shown_gpus, version, slots, models, gateway, ok = rows[(NAME, name)]
        assert (unit, shown_port, version, ok) == ("running", str(port), "0.33.0", "ok")
        env = host(NAME).file(f"/etc/ollama/instances/{name}.env").content_string
        assert f'OLLAMA_NUM_PARALLEL="{slots}"\n' in env  # what status shows is what the unit got
        assert shown_gpus == ",".join(f"{i}:{gpus[i][:12]}" for i in indices)
        assert models.startswith(model + " ") and " est " in models and "not loaded" not in models
        assert gateway.startswith("up, ")
    assert "all 3 instances ok" in run.stdout
    assert recap(run)[NAME]["changed"] == 0
    shows_what_is_loaded(picture)


def shows_what_is_loaded(picture):
    """The status picture in Chromium: each instance's unit state and version, and its model's bar as wide
    as the share of the instance's VRAM that /api/ps reports in VRAM."""
    h = host(NAME)
    with browser.page(picture) as driver:
        for name, (port, indices, model) in PLAN.items():
            card = driver.find_element("css selector", f".instance[data-instance={name}]")
            assert "unit running · Ollama 0.33.0" in card.text
            ps = json.loads(h.check_output(f"curl -sf http://127.0.0.1:{port}/api/ps"))
            (loaded,) = [m for m in ps["models"] if m["name"] == model]
            vram = sum(
                int(h.check_output(f"nvidia-smi -i {i} --query-gpu=memory.total --format=csv,noheader,nounits"))
                for i in indices
            )
            (track,) = browser.rects(driver, ".track", card)
            (bar,) = browser.rects(driver, ".bar.actual", card)
            assert bar["width"] / track["width"] == pytest.approx(loaded["size_vram"] / (vram * 2**20), abs=0.01)


def test_metrics_name_instances_as_the_plan_does(gpus):
    h = host(NAME)
    families = metrics(h)
    up = {(s.labels["host"], s.labels["ollama_instance"]): s.value for s in families["ollama_gateway_instance_up"]}
    assert up == {(NAME, name): 1.0 for name in PLAN}
    slots = {s.labels["ollama_instance"]: s.value for s in families["ollama_gateway_instance_slots"]}
    assert slots == {"small": 4.0, "large": 2.0, "solo": 1.0}
    for name, (_port, indices, _model) in PLAN.items():
        info = {
            s.labels["gpu_uuid"] for s in families["ollama_instance_gpu_info"] if s.labels["ollama_instance"] == name
        }
        env = h.check_output(f"grep ^CUDA_VISIBLE_DEVICES= /etc/ollama/instances/{name}.env").split("=", 1)[1]
        assert info == {gpus[i] for i in indices} == set(env.strip('"').split(","))
    for sample in families["ollama_instance_model_vram_bytes"]:
        port = PLAN[sample.labels["ollama_instance"]][0]
        ps = json.loads(h.check_output(f"curl -sf http://127.0.0.1:{port}/api/ps"))
        assert sample.value == {m["name"]: m["size_vram"] for m in ps["models"]}[sample.labels["model"]]
    assert families["nginx_http_requests"][0].value > 0
    # only this host may read it
    assert h.run("curl -sf --max-time 3 http://10.213.0.11:8081/metrics").rc != 0


def test_status_fails_and_names_a_stopped_instance():
    h = host(NAME)
    h.check_output("systemctl stop ollama@solo.service")
    try:
        run = playbook("playbooks/status.yml")
        assert run.returncode != 0
        rows = status_rows(run)
        assert rows[(NAME, "solo")][0] == "stopped" and rows[(NAME, "solo")][-1] == "PROBLEM"
        assert rows[(NAME, "small")][-1] == "ok"
        out = run.stdout + run.stderr
        assert f"{NAME}/solo: unit ollama@solo.service is stopped" in out
        assert f"{NAME}/solo: API on port 11437 does not answer (connection refused)" in out
        assert "Traceback" not in out
    finally:
        h.check_output("systemctl start ollama@solo.service")
        wait_for_full_rotation(NAME)


# What an operator or an accident changes on a host behind site.yml's back, after the no-change run (molecule's
# idempotence step): each is found and put right by the next run, however the no-change path is made cheaper.
DRIFTS = {
    "a hand-edited env file": "sed -i 's/^OLLAMA_NUM_PARALLEL=.*/OLLAMA_NUM_PARALLEL=9/' /etc/ollama/instances/small.env",
    "a stopped instance": "systemctl stop ollama@solo.service",
    "a removed device drop-in": "rm /etc/systemd/system/ollama@large.service.d/devices.conf && systemctl daemon-reload",
    "a deleted pinned model": 'curl -sf -X DELETE http://127.0.0.1:11435/api/delete -d \'{"model": "qwen3:0.6b"}\'',
    "a hand-edited gateway configuration": "echo '# by hand' >> /etc/nginx/conf.d/ollama-gateway.conf",
    "a stopped health checker": "systemctl stop ollama-gateway-health.service",
}


def test_site_finds_and_repairs_each_drift():
    h = host(NAME)
    env_before = h.check_output("sha256sum /etc/ollama/instances/small.env")
    gateway_conf_before = h.check_output("sha256sum /etc/nginx/conf.d/ollama-gateway.conf")
    devices_before = h.check_output("systemctl show -p DeviceAllow --value ollama@large.service")
    assert devices_before  # the drop-in's allow-list is what the unit runs with
    large_since = h.check_output("systemctl show -p ActiveEnterTimestampMonotonic --value ollama@large.service")
    for what, command in DRIFTS.items():
        assert h.run(command).rc == 0, what
    assert "qwen3:0.6b" not in h.check_output("curl -sf http://127.0.0.1:11435/api/tags")
    run = site()
    assert run.returncode == 0, run.stdout[-3000:]
    assert recap(run)[NAME]["changed"] > 0
    # the one read of the host found each drift (ollama_plan_host's), and sent the host down the full path
    for found in (
        "file /etc/ollama/instances/small.env: content differs",
        "unit ollama@solo.service: inactive, not active",
        "file /etc/systemd/system/ollama@large.service.d/devices.conf: missing",
        "model registry.ollama.ai/library/qwen3:0.6b: to pull",
        # and the gateway's (roles/ollama_gateway/tasks/host_state.yml)
        "file /etc/nginx/conf.d/ollama-gateway.conf: content differs",
        "unit ollama-gateway-health.service: inactive, not active",
    ):
        assert found in run.stdout, found
    # the env file is the plan's again, and the instance runs with it
    assert h.check_output("sha256sum /etc/ollama/instances/small.env") == env_before
    assert process_env(h, "small")["OLLAMA_NUM_PARALLEL"] == "4"
    assert h.service("ollama@solo.service").is_running
    assert h.file("/etc/systemd/system/ollama@large.service.d/devices.conf").exists
    assert h.check_output("systemctl show -p DeviceAllow --value ollama@large.service") == devices_before
    # restarted, so that its process runs under the allow-list again
    assert h.check_output("systemctl show -p ActiveEnterTimestampMonotonic --value ollama@large.service") != large_since
    tags = json.loads(h.check_output("curl -sf http://127.0.0.1:11437/api/tags"))
    assert "qwen3:0.6b" in [m["name"] for m in tags["models"]]
    ps = json.loads(h.check_output("curl -sf http://127.0.0.1:11437/api/ps"))
    assert [m["name"] for m in ps["models"]] == ["qwen3:0.6b"]  # warm again, as site.yml leaves a pinned model
    assert h.check_output("sha256sum /etc/nginx/conf.d/ollama-gateway.conf") == gateway_conf_before
    assert h.service("ollama-gateway-health.service").is_running
    wait_for_full_rotation(NAME)


def test_a_hand_edited_upstreams_list_is_found_and_rendered_again():
    """upstreams.conf is the drain tool's, rendered from fleet.json and the drain marks: the gateway's one read asks
    the tool whether it holds that (no instance restarts here, whose drains would render it again on the way)."""
    h = host(NAME)
    upstreams = "/etc/nginx/ollama-gateway/upstreams.conf"
    assert h.run(f"echo '# by hand' >> {upstreams}").rc == 0
    run = site()
    assert run.returncode == 0, run.stdout[-3000:]
    # (the drift's whole line, with the tool's own words, is longer than the YAML callback keeps on one line)
    assert "upstreams: not what the drain tool renders" in run.stdout
    assert recap(run)[NAME]["changed"] > 0
    assert "# by hand" not in h.file(upstreams).content_string
    assert h.run("/usr/local/sbin/ollama-gateway-drain check").rc == 0
    wait_for_full_rotation(NAME)


# After the repair run above, which also loaded again what earlier tests unloaded (a killed instance comes back
# empty): the next run finds nothing to change.
def test_a_run_that_changes_nothing_reads_the_host_once_and_skips_the_rest():
    run = site()
    assert run.returncode == 0, run.stdout[-3000:]
    assert "TASK [ollama : Discover the GPUs and plan the instances, check the plan and compare" in run.stdout
    assert "TASK [ollama_gateway : Read how this gateway differs from the plan]" in run.stdout
    # the full paths did not run: neither their first task nor the env files' or the gateway's writes
    for first in ("Show what differs from the plan on this host", "Show what differs from the plan on this gateway"):
        shown = run.stdout.find(first)
        assert shown < 0, run.stdout[shown : shown + 2000]
    assert "Write the environment of instance" not in run.stdout
    assert "Write the gateway's nginx configuration" not in run.stdout
    assert recap(run)[NAME]["changed"] == 0


def test_uninstall_asks_for_confirmation_first():
    run = playbook("playbooks/uninstall.yml")
    assert run.returncode != 0
    assert "Run it again with -e ollama_uninstall_confirm=yes" in " ".join((run.stdout + run.stderr).split())
    assert host(NAME).service("ollama@small.service").is_running


# A unit that refers to the toolkit's units keeps them in systemd's memory once their files are gone, as
# a cgroup the kernel keeps marked populated does (README, Uninstalling): they stay listed as "not-found inactive dead".
# Planted before the first uninstall, so both uninstalls meet that state on every machine.
PIN = "/etc/systemd/system/olt-remembers.service"
REMEMBERED = ["ollama@small.service", "ollama@solo.service", "ollama-gateway-health.service"]
PIN_UNIT = f"""[Unit]
Description=test - keeps the units of the toolkit in the memory of systemd
Wants={" ".join(REMEMBERED)}
[Service]
Type=oneshot
RemainAfterExit=yes
ExecStart=/bin/true
"""


def listed_by_systemd(h) -> list[str]:
    return h.check_output("systemctl list-units --all --plain --no-legend --full 'ollama*' | awk '{print $1}'").split()


@pytest.fixture(scope="module")
def before_uninstall():
    h = host(NAME)
    h.check_output(f"printf %s '{PIN_UNIT}' > {PIN} && systemctl daemon-reload && systemctl start olt-remembers")
    return footprint(h)


def test_uninstall_removes_the_toolkit_and_nothing_else(before_uninstall):
    h = host(NAME)
    run = playbook("playbooks/uninstall.yml", CONFIRM)
    assert run.returncode == 0, run.stdout[-3000:]
    assert left_behind(h, GPU_HOST_PATHS + GATEWAY_PATHS) == []
    # systemd still lists the remembered units; none of them (nor any other) runs, starts at boot or holds a process
    assert set(REMEMBERED) <= set(listed_by_systemd(h))
    assert units_left(h, "ollama*") == []
    assert h.check_output("pgrep -a -f '[o]llama (serve|runner)|[o]llama-gateway-health' || true") == ""
    assert not h.user("ollama").exists and not h.group("ollama").exists
    assert h.check_output("ss -Htln '( sport >= :11434 and sport <= :11437 )'") == ""
    assert h.service("nginx").is_running and h.run("nginx -t").rc == 0
    # packages, other accounts and the model store stay as they were
    assert footprint(h) == before_uninstall
    assert before_uninstall["models"].count("manifests/") == 3


def test_a_second_uninstall_changes_nothing():
    h = host(NAME)
    try:
        assert set(REMEMBERED) <= set(listed_by_systemd(h)), "the state this test is about is not there"
        run = playbook("playbooks/uninstall.yml", CONFIRM)
        assert run.returncode == 0, run.stdout[-3000:]
        assert {name: counts["changed"] for name, counts in recap(run).items()} == {"localhost": 0, NAME: 0}
    finally:
        h.check_output(f"systemctl stop olt-remembers; rm -f {PIN}; systemctl daemon-reload")


# What Ollama's scripts/install.sh (v0.33.0-rc2) writes: the unit operators have before they adopt the toolkit.
INSTALL_SH_UNIT = """[Unit]
Description=Ollama Service
After=network-online.target

[Service]
ExecStart=/usr/local/bin/ollama serve
User=ollama
Group=ollama
Restart=always
RestartSec=3

[Install]
WantedBy=default.target
"""


def test_site_restores_service_after_uninstall(before_uninstall):
    # the host now looks like one that ran install.sh: its unit in /etc/systemd/system, enabled
    h = host(NAME)
    h.check_output(
        f"printf %s '{INSTALL_SH_UNIT}' > /etc/systemd/system/ollama.service && systemctl enable ollama.service"
    )
    run = site()
    assert run.returncode == 0, run.stdout[-3000:]
    assert (healthz()["up"], healthz()["total"]) == (3, 3)
    answer = call(f"{GATEWAY}/api/generate", {"model": "qwen3:0.6b", "prompt": "back?", "stream": False})
    assert answer.status == 200 and answer.headers["x-ollama-instance"] == f"{NAME}:11437"
    # install.sh's unit is set aside (kept for uninstall) and masked, so it cannot take every GPU again
    assert h.file("/etc/systemd/system/ollama.service").linked_to == "/dev/null"
    assert h.file("/etc/ollama/ollama.service.before-toolkit").content_string == INSTALL_SH_UNIT
    # the kept store served the models again: nothing was pulled anew, and the new ollama user owns it
    assert footprint(h)["models"] == before_uninstall["models"]
    assert h.check_output("find /var/lib/ollama/models ! -user ollama | wc -l") == "0"
    assert playbook("playbooks/status.yml").returncode == 0


def test_uninstall_puts_back_the_unit_install_sh_wrote():
    run = playbook("playbooks/uninstall.yml", CONFIRM)
    assert run.returncode == 0, run.stdout[-3000:]
    unit = host(NAME).file("/etc/systemd/system/ollama.service")
    assert not unit.is_symlink and unit.content_string == INSTALL_SH_UNIT
    assert host(NAME).run("systemctl is-enabled ollama.service").stdout.strip() == "disabled"
