"""Two GPU hosts behind a gateway host: keys, TLS, routing across hosts, firewall, bounded queue."""

import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[3]
sys.path.insert(0, str(REPO / "tests"))
from helpers.ollama_client import burst, call  # noqa: E402

GATEWAY = "https://10.213.0.23:11434"
CA = str(REPO / ".cache/artifacts/tls/gateway.crt")
USER, ADMIN = "olt-test-user-key-0001", "olt-test-admin-key-0001"


def get(path, **kw):
    return call(f"{GATEWAY}{path}", cafile=CA, **kw)


def test_every_instance_of_both_hosts_is_up_behind_the_gateway():
    health = get("/healthz").json()
    assert (health["up"], health["total"]) == (6, 6)
    assert sorted({i["host"] for i in health["instances"]}) == ["olt-mh-gpu1", "olt-mh-gpu2"]


def test_api_keys_are_enforced():
    body = {"model": "qwen3:0.6b", "prompt": "hi", "stream": False, "options": {"num_predict": 1}}
    no_key = get("/api/generate", body=body)
    assert no_key.status == 401 and no_key.headers["www-authenticate"].startswith("Bearer")
    assert get("/api/generate", body=body, key="olt-wrong-key-00000001").status == 401
    assert get("/api/generate", body=body, key=USER).status == 200
    assert get("/api/tags").status == 401 and get("/api/tags", key=USER).status == 200


def test_admin_key_for_management_only():
    pull = {"model": "qwen3:0.6b", "stream": False}
    assert get("/api/pull", body=pull, key=USER).status == 403
    assert get("/api/pull", body=pull, key=ADMIN).status == 200


def test_tls_is_enforced():
    plain = call("http://10.213.0.23:11434/api/version", key=USER)
    assert plain.status == 400  # nginx: plain HTTP request sent to the HTTPS port
    assert get("/api/version", key=USER).json() == {"version": "0.33.0"}


def test_a_model_pinned_to_one_instance_is_answered_only_by_it():
    body = {"model": "qwen3:0.6b", "prompt": "hi", "stream": False, "options": {"num_predict": 1}}
    seen = {get("/api/generate", body=body, key=USER).headers["x-ollama-instance"] for _ in range(6)}
    assert seen == {"olt-mh-gpu1:11435"}


def test_a_model_on_several_hosts_spreads_over_them():
    body = {"model": "llama3.1:8b", "prompt": "hi", "stream": False, "options": {"num_predict": 10}}
    answers = burst(f"{GATEWAY}/api/generate", [body] * 8, key=USER, cafile=CA)
    hosts = {a.headers["x-ollama-instance"].split(":")[0] for a in answers}
    assert [a.status for a in answers] == [200] * 8 and hosts == {"olt-mh-gpu1", "olt-mh-gpu2"}


def test_streaming_through_tls_arrives_token_by_token():
    answer = get(
        "/api/generate", body={"model": "llama3.1:8b", "prompt": "hi", "options": {"num_predict": 20}}, key=USER
    )
    assert answer.status == 200 and len(answer.chunk_times) == 21
    assert answer.chunk_times[-1] - answer.chunk_times[0] > 0.25


def test_past_slots_and_queue_the_gateway_answers_503_with_retry_after():
    # 6 slots + queue 4 = 10 requests in flight at most; 16 long ones at once: 10 served, 6 told to retry
    body = {"model": "llama3.1:8b", "prompt": "long", "stream": False, "options": {"num_predict": 60}}
    answers = burst(f"{GATEWAY}/api/generate", [body] * 16, key=USER, cafile=CA)
    statuses = sorted(a.status for a in answers)
    assert statuses.count(200) == 10 and statuses.count(503) == 6, statuses
    assert all(a.headers.get("retry-after") == "2" for a in answers if a.status == 503)


@pytest.mark.parametrize("source, reaches", [("olt-mh-gw", True), ("olt-mh-gpu2", False)])
def test_instances_are_reachable_only_from_the_gateway(host, source, reaches):
    if host.backend.get_hostname() != source:
        pytest.skip("runs on its source host")
    result = host.run("curl -s -m 3 -o /dev/null -w '%{http_code}' http://10.213.0.21:11435/api/version")
    assert (result.stdout == "200") is reaches
