"""Models for an air-gapped fleet. The GPU hosts reach nothing beyond the test subnet (prepare.yml) and pull every
model from the registry on olt-mh-gw (ollama_registry role, TLS), which the controller loaded once from "the
internet": tests/helpers/public_registry.py on the controller, which logs every byte it serves.

Then a store is tampered with (other weights under a pinned name) and gpu2 pins one more model for one run and
gives it up on the next: status shows the mismatch, digest_policy fail stops a run before anything changes,
correct pulls the pinned weights again with progress in the play's output, and the model given up leaves gpu2's
store while gpu1, which still pins it, keeps it."""

import os
import re
import ssl
import urllib.request
from pathlib import Path

import pytest
from helpers import public_registry
from helpers.fleet import host, playbook, site, snapshot
from helpers.ollama_client import call

REPO = Path(__file__).resolve().parents[3]

GPU_HOSTS = {"olt-mh-gpu1": "10.213.0.21", "olt-mh-gpu2": "10.213.0.22"}
ALL_HOSTS = [*GPU_HOSTS, "olt-mh-gw", "olt-mh-gw2"]
REGISTRY = "https://10.213.0.23:5000"
LOADED = ["qwen3:0.6b", "llama3.1:8b", "nomic-embed-text:latest"]
CA = str(REPO / ".cache/artifacts/tls/gateway.crt")
GATEWAY = "https://10.213.0.23:11434"
USER = "olt-test-user-key-0001"
STORE = "/var/lib/ollama/models/manifests/registry.ollama.ai/library"
GPU2_INSTANCE = "http://10.213.0.22:11435"
MORE = "qwen3:0.6b"  # pinned on gpu1 throughout; on gpu2 for one run


def manifest(model: str) -> str:
    name, tag = model.split(":")
    return f"{STORE}/{name}/{tag}"


def store_digest(name: str, model: str) -> str:
    """What Ollama calls the model's digest: sha256 of its manifest file (server/images.go)."""
    answer = host(name).run(f"sha256sum {manifest(model)}")
    return answer.stdout.split()[0] if answer.rc == 0 else ""


def said(run) -> str:
    """The run's output with whitespace folded: the YAML callback wraps long messages."""
    return re.sub(r"\s+", " ", run.stdout + run.stderr)


def registry_digest(model: str) -> str:
    name, tag = model.split(":")
    request = urllib.request.Request(
        f"{REGISTRY}/v2/library/{name}/manifests/{tag}",
        method="HEAD",
        headers={"Accept": "application/vnd.docker.distribution.manifest.v2+json"},
    )
    with urllib.request.urlopen(request, context=ssl.create_default_context(cafile=CA), timeout=10) as answer:
        return answer.headers["Docker-Content-Digest"].removeprefix("sha256:")


def test_each_model_crossed_the_internet_once_and_never_to_a_gpu_host():
    """Counted by the "internet" itself: public_registry.py logs the body bytes of every blob it sends, per
    client address and model. One copy of a model is the sum of its blobs' sizes."""
    log = Path(os.environ["MOLECULE_EPHEMERAL_DIRECTORY"]) / "public-registry.log"
    sent = public_registry.blob_bytes(log)
    clients = {client for client, _ in sent}
    assert clients.isdisjoint(GPU_HOSTS.values()), f"a GPU host fetched from outside: {sent}"
    for model in LOADED:
        fetched = sum(count for (_, name), count in sent.items() if name == model)
        assert fetched == public_registry.image_bytes(model), f"{model}: {fetched} bytes from outside"


def test_gpu_hosts_reach_the_registry_and_nothing_outside():
    for name in GPU_HOSTS:
        gpu = host(name)
        assert gpu.run(f"curl -sf --max-time 5 {REGISTRY}/v2/").rc == 0, "the registry (TLS with the installed CA)"
        assert gpu.run("curl -s --max-time 3 http://10.213.0.1:5001/v2/").rc != 0, "the internet"
    # the registry has no login Ollama could use: only the fleet reaches it
    assert host("olt-mh-gw2").run(f"curl -sk --max-time 5 {REGISTRY}/v2/").rc != 0


def test_the_gateway_serves_the_models_under_their_usual_names_with_the_registrys_digests():
    listed = {m["name"] for m in call(f"{GATEWAY}/api/tags", cafile=CA, key=USER).json()["models"]}
    assert {"qwen3:0.6b", "llama3.1:8b"} <= listed and not any("10.213.0.23" in name for name in listed)
    body = {"model": "llama3.1:8b", "prompt": "hi", "stream": False, "options": {"num_predict": 3}}
    assert call(f"{GATEWAY}/api/generate", body=body, cafile=CA, key=USER).status == 200
    for name in GPU_HOSTS:
        assert host(name).run("ls /var/lib/ollama/models/manifests").stdout.split() == ["registry.ollama.ai"]
        assert store_digest(name, "llama3.1:8b") == registry_digest("llama3.1:8b")


@pytest.fixture(scope="module")
def pinned():
    """gpu2 holds other weights under llama3.1:8b (its manifest changed); the inventory pins the registry's."""
    gpu2 = host("olt-mh-gpu2")
    gpu2.check_output(f"echo >> {manifest('llama3.1:8b')}")
    return {"ollama_model_digests": {"llama3.1:8b": "sha256:" + registry_digest("llama3.1:8b")}}


def test_status_shows_hosts_that_hold_other_weights_under_one_name(pinned):
    run = playbook("playbooks/status.yml")
    assert run.returncode != 0
    other = store_digest("olt-mh-gpu2", "llama3.1:8b")[:12]
    assert f"llama3.1:8b is {other} on olt-mh-gpu2: hosts disagree" in said(run), run.stdout[-3000:]
    pinned_run = playbook("playbooks/status.yml", pinned)
    wanted = pinned["ollama_model_digests"]["llama3.1:8b"][7:19]
    assert f"llama3.1:8b is {other} on olt-mh-gpu2: pinned {wanted}" in said(pinned_run), pinned_run.stdout[-3000:]


def test_digest_policy_fail_stops_the_run_before_any_host_changes(pinned):
    before = snapshot(ALL_HOSTS)
    run = site({**pinned, "ollama_model_digest_policy": "fail"})
    assert run.returncode != 0
    other, wanted = store_digest("olt-mh-gpu2", "llama3.1:8b"), pinned["ollama_model_digests"]["llama3.1:8b"][7:]
    expected = f"llama3.1:8b is sha256:{other[:12]} in the store, ollama_model_digests pins sha256:{wanted[:12]}"
    assert "host olt-mh-gpu2: " + expected in said(run), run.stdout[-3000:]
    assert snapshot(ALL_HOSTS) == before
    assert store_digest("olt-mh-gpu2", "llama3.1:8b") == other


def test_a_run_pulls_the_pinned_weights_again_and_a_new_model_with_progress(pinned):
    gpu2 = host("olt-mh-gpu2")
    # a model the toolkit never pinned: an operator's, which no run may delete
    gpu2.check_output(
        f'curl -sf {GPU2_INSTANCE}/api/copy -d \'{{"source": "llama3.1:8b", "destination": "ops-scratch"}}\''
    )
    run = site({**pinned, "olt_mh_gpu2_more_models": [MORE], "ollama_pull_progress_interval": 2})
    assert run.returncode == 0, run.stdout[-3000:]
    assert store_digest("olt-mh-gpu2", "llama3.1:8b") == pinned["ollama_model_digests"]["llama3.1:8b"][7:]
    assert store_digest("olt-mh-gpu2", MORE) == registry_digest(MORE)
    # a pull lasts 6 s (the stand-in's PULL_MS): lines every 2 s while it runs, with percent and rate. The
    # corrected llama3.1:8b fetched nothing (its blobs were in the store, only the manifest differed)
    lines = re.findall(rf"{re.escape(MORE)}: (\d+)% of \S+ \S+ at \S+ \S+/s", said(run))
    assert len(lines) >= 2 and int(lines[0]) < 100, f"{MORE}: {lines}"


def test_a_model_no_instance_pins_any_more_leaves_the_store_and_nothing_else_does(pinned):
    run = site(pinned)
    assert run.returncode == 0, run.stdout[-3000:]
    gpu2 = host("olt-mh-gpu2")
    assert not gpu2.file(manifest(MORE)).exists
    assert MORE not in gpu2.check_output(f"curl -sf {GPU2_INSTANCE}/api/ps")
    listed = gpu2.check_output(f"curl -sf {GPU2_INSTANCE}/api/tags")
    assert "ops-scratch:latest" in listed and "llama3.1:8b" in listed  # not the toolkit's, and pinned
    assert host("olt-mh-gpu1").file(manifest(MORE)).exists  # gpu1 still pins it
    gpu2.check_output(f'curl -sf -X DELETE {GPU2_INSTANCE}/api/delete -d \'{{"model": "ops-scratch"}}\'')
