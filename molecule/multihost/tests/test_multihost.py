"""Two GPU hosts behind a gateway host: keys, TLS, routing across hosts, firewall, bounded queue."""

import hashlib
import json
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import ollama
import openai
import pytest
from helpers.day2 import metrics
from helpers.fleet import health, host
from helpers.ollama_client import burst, call
from helpers.waiting import wait_until

REPO = Path(__file__).resolve().parents[3]

GATEWAY = "https://10.213.0.23:11434"
CA = str(REPO / ".cache/artifacts/tls/gateway.crt")
USER, ADMIN = "olt-test-user-key-0001", "olt-test-admin-key-0001"
TEAM = "olt-test-team-key-0002"  # named team-small, 1 request at a time (molecule.yml)
ON_DEMAND = "http://10.213.0.21:11438"  # olt-mh-gpu1/gpu3, which pins nothing
EMBED = "nomic-embed-text:latest"
GATEWAYS = {"olt-mh-gw": "https://10.213.0.23:11434", "olt-mh-gw2": "https://10.213.0.24:11434"}
REQUEST_LOG = "/var/log/nginx/ollama-gateway-requests.log"


def get(path, **kw):
    return call(f"{GATEWAY}{path}", cafile=CA, **kw)


def test_every_instance_of_both_hosts_is_up_behind_the_gateway():
    seen = health("olt-mh-gw")
    assert (seen["up"], seen["total"]) == (6, 6)
    assert sorted({i["host"] for i in seen["instances"]}) == ["olt-mh-gpu1", "olt-mh-gpu2"]
    assert get("/healthz").json() == {"status": "up"}  # the public one names nothing


def test_api_keys_are_enforced():
    body = {"model": "qwen3:0.6b", "prompt": "hi", "stream": False, "options": {"num_predict": 1}}
    no_key = get("/api/generate", body=body)
    assert no_key.status == 401 and no_key.headers["www-authenticate"].startswith("Bearer")
    assert get("/api/generate", body=body, key="olt-wrong-key-00000001").status == 401
    assert get("/api/generate", body=body, key=USER).status == 200
    assert get("/api/tags").status == 401 and get("/api/tags", key=USER).status == 200


def test_management_is_refused_even_with_the_admin_key():
    pull = {"model": "qwen3:0.6b", "stream": False}
    for key in (USER, ADMIN):
        refused = get("/api/pull", body=pull, key=key)
        assert refused.status == 403 and "site.yml" in refused.json()["error"]


def test_a_model_pinned_nowhere_loads_on_the_on_demand_instance_only():
    """ollama_gateway_unpinned_models: [olt-mh-gpu1/gpu3], the one instance that pins nothing: an embedding
    model in gpu1's store (pulled there by hand from the fleet's registry, as an operator would try one, and
    copied to its usual name) is served by it alone, through the official clients; every pinned model stays
    where the plan put it."""
    gpu1 = host("olt-mh-gpu1")
    mirrored = f"10.213.0.23:5000/library/{EMBED}"
    gpu1.check_output(f'curl -sf {ON_DEMAND}/api/pull -d \'{{"model": "{mirrored}", "stream": false}}\'')
    gpu1.check_output(f'curl -sf {ON_DEMAND}/api/copy -d \'{{"source": "{mirrored}", "destination": "{EMBED}"}}\'')
    gpu1.check_output(f'curl -sf -X DELETE {ON_DEMAND}/api/delete -d \'{{"model": "{mirrored}"}}\'')
    try:
        client = ollama.Client(host=GATEWAY, verify=CA, trust_env=False, headers={"Authorization": f"Bearer {USER}"})
        vectors = client.embed(model=EMBED, input=["one", "two"]).embeddings
        assert len(vectors) == 2 and len(vectors[0]) > 0 and vectors[0] != vectors[1]
        assert len(client.embeddings(model=EMBED, prompt="one").embedding) == len(vectors[0])  # legacy API
        api = openai.OpenAI(
            base_url=f"{GATEWAY}/v1", api_key=USER, http_client=httpx.Client(verify=CA, trust_env=False)
        )
        assert [v.index for v in api.embeddings.create(model=EMBED, input=["one", "two"]).data] == [0, 1]
        loaded = get("/api/ps", key=USER).json()["models"]
        where = {(m["name"], m["ollama_fleet"]["host"], m["ollama_fleet"]["instance"]) for m in loaded}
        assert (EMBED, "olt-mh-gpu1", "gpu3") in where
        assert not any(name == EMBED and instance != "gpu3" for name, _, instance in where)
        assert EMBED in {m.model for m in client.list().models}
        listed = {m["name"]: m["ollama_fleet"]["hosts"] for m in get("/api/tags", key=USER).json()["models"]}
        assert listed[EMBED] == ["olt-mh-gpu1"] and listed["llama3.1:8b"] == ["olt-mh-gpu1", "olt-mh-gpu2"]
    finally:
        gpu1.run(f'curl -s {ON_DEMAND}/api/generate -d \'{{"model": "{EMBED}", "keep_alive": 0}}\'')
        gpu1.run(f'curl -s -X DELETE {ON_DEMAND}/api/delete -d \'{{"model": "{EMBED}"}}\'')


def test_tls_is_enforced():
    plain = call("http://10.213.0.23:11434/api/version", key=USER)
    assert plain.status == 400  # nginx: plain HTTP request sent to the HTTPS port
    assert get("/api/version", key=USER).json() == {"version": "0.33.0"}


def test_a_model_pinned_to_one_instance_is_answered_only_by_it():
    body = {"model": "qwen3:0.6b", "prompt": "hi", "stream": False, "options": {"num_predict": 1}}
    seen = {get("/api/generate", body=body, key=USER).headers["x-ollama-instance"] for _ in range(6)}
    assert seen == {"olt-mh-gpu1:11435"}


def test_a_model_on_several_hosts_spreads_over_them():
    # eight conversations at once (affinity keeps each on one instance), more than olt-mh-gpu1 has slots for
    bodies = [
        {"model": "llama3.1:8b", "prompt": f"hi, {n}", "stream": False, "options": {"num_predict": 10}}
        for n in range(8)
    ]
    answers = burst(f"{GATEWAY}/api/generate", bodies, key=USER, cafile=CA)
    hosts = {a.headers["x-ollama-instance"].split(":")[0] for a in answers}
    assert [a.status for a in answers] == [200] * 8 and hosts == {"olt-mh-gpu1", "olt-mh-gpu2"}


def test_streaming_through_tls_arrives_token_by_token():
    answer = get(
        "/api/generate", body={"model": "llama3.1:8b", "prompt": "hi", "options": {"num_predict": 20}}, key=USER
    )
    assert answer.status == 200 and len(answer.chunk_times) == 21
    assert answer.chunk_times[-1] - answer.chunk_times[0] > 0.25


def test_past_slots_and_queue_the_gateway_answers_503_with_retry_after():
    # 6 slots + queue 4 = 10 requests in flight at most; 16 long ones at once: 10 served, 6 told to retry. Long
    # enough (about 6 s each) that none ends and frees its place before the last of the 16 has arrived.
    body = {"model": "llama3.1:8b", "prompt": "long", "stream": False, "options": {"num_predict": 300}}
    answers = burst(f"{GATEWAY}/api/generate", [body] * 16, key=USER, cafile=CA)
    statuses = sorted(a.status for a in answers)
    assert statuses.count(200) == 10 and statuses.count(503) == 6, statuses
    assert all(a.headers.get("retry-after") == "2" for a in answers if a.status == 503)


def test_a_named_key_over_its_own_limit_is_told_to_retry_while_another_key_is_served():
    """team-small may hold 1 request at a time (molecule.yml), counted by its name whatever address sends it:
    while its stream runs (its first line arrived: admitted), its next request gets 503 with Retry-After; the
    plain key, limited per address, is served meanwhile."""
    long = {"model": "llama3.1:8b", "prompt": "long", "options": {"num_predict": 100}}
    short = {"model": "qwen3:0.6b", "prompt": "hi", "stream": False, "options": {"num_predict": 1}}
    with (
        httpx.Client(verify=CA, trust_env=False, timeout=60) as client,
        client.stream(
            "POST", f"{GATEWAY}/api/generate", json=long, headers={"Authorization": f"Bearer {TEAM}"}
        ) as held,
    ):
        lines = held.iter_lines()
        assert held.status_code == 200 and json.loads(next(lines))["done"] is False
        refused = get("/api/generate", body=short, key=TEAM)
        served = get("/api/generate", body=short, key=USER)
        assert json.loads(list(lines)[-1])["done"] is True
    assert refused.status == 503 and refused.headers.get("retry-after") == "2"
    assert served.status == 200


def test_a_key_name_or_a_key_sent_another_way_opens_nothing():
    """Names are for the log and the limits, never credentials. A path and a model carrying quotes and a newline
    must not break the log's JSON lines (the next test parses them)."""
    short = {"model": 'qwen3:0.6b"\n{"key":"x"}', "prompt": "hi", "stream": False}
    for authorization in ("Bearer team-small", f"Bearer  {TEAM}", TEAM, f"Basic {TEAM}"):
        answer = get("/api/generate", body=short, headers={"Authorization": authorization})
        assert answer.status == 401, authorization
    assert get("/api/generate", body=short, key=TEAM).status != 401  # the key itself opens it
    assert get('/api/%22%0a{"key":"x"}', key=TEAM).status == 404


def test_the_access_log_names_each_key_and_never_its_secret():
    gateway = host("olt-mh-gw")
    text = gateway.check_output("cat /var/log/nginx/ollama-gateway-requests.log")
    for secret in (USER, ADMIN, TEAM):
        assert secret not in text
    lines = [json.loads(line) for line in text.splitlines()]
    team = [line for line in lines if line["key"] == "team-small"]
    assert any(line["status"] == 503 and line["model"] == "qwen3:0.6b" for line in team)
    assert any(
        line["status"] == 200 and line["model"] == "llama3.1:8b" and line["instance"] and float(line["ttfb"]) > 0
        for line in team
    )
    user = "key-" + hashlib.sha256(USER.encode()).hexdigest()[:8]
    assert any(line["key"] == user and line["endpoint"] == "/api/generate" for line in lines)
    assert any(line["key"] == "" and line["status"] == 401 for line in lines)  # no key: no name


def samples(gateway: str) -> dict:
    """Every sample of GATEWAY's /metrics: {(name, frozenset(labels)): value}."""
    return {
        (s.name, frozenset(s.labels.items())): s.value for family in metrics(host(gateway)).values() for s in family
    }


def counted(seen: dict, name: str, **labels) -> float:
    return sum(v for (n, ls), v in seen.items() if n == name and set(labels.items()) <= ls)


@pytest.mark.parametrize("gateway", sorted(GATEWAYS))
def test_tokens_and_first_tokens_are_counted_per_key_through_each_gateway(gateway):
    """Both APIs through the official clients, streamed and not: what each answer said it cost is what the
    gateway's metrics count under the key's name, and the log line of each says it too."""
    url, name = GATEWAYS[gateway], "team-small"
    before = samples(gateway)
    native = ollama.Client(host=url, verify=CA, trust_env=False, headers={"Authorization": f"Bearer {TEAM}"})
    api = openai.OpenAI(base_url=f"{url}/v1", api_key=TEAM, http_client=httpx.Client(verify=CA, trust_env=False))
    ask = [{"role": "user", "content": "count"}]
    generated = native.generate(model="qwen3:0.6b", prompt="one", options={"num_predict": 3})
    streamed = list(native.chat(model="qwen3:0.6b", messages=ask, stream=True, options={"num_predict": 4}))[-1]
    answer = api.chat.completions.create(model="qwen3:0.6b", messages=ask, max_tokens=5)
    chunks = list(
        api.chat.completions.create(
            model="qwen3:0.6b", messages=ask, max_tokens=6, stream=True, stream_options={"include_usage": True}
        )
    )
    usage = chunks[-1].usage
    said = {
        "completion": [
            generated.eval_count,
            streamed.eval_count,
            answer.usage.completion_tokens,
            usage.completion_tokens,
        ],
        "prompt": [
            generated.prompt_eval_count,
            streamed.prompt_eval_count,
            answer.usage.prompt_tokens,
            usage.prompt_tokens,
        ],
    }
    assert said["completion"] == [3, 4, 5, 6]

    def grown(metric, **labels):
        return counted(samples(gateway), metric, **labels) - counted(before, metric, **labels)

    wait_until(lambda: grown("ollama_eval_total", key=name, model="qwen3:0.6b") == 18, 15, "18 tokens counted")
    assert grown("ollama_prompt_eval_total", key=name, model="qwen3:0.6b") == sum(said["prompt"])
    assert grown("ollama_gateway_requests_total", key=name, model="qwen3:0.6b", status="200") == 4
    assert grown("ollama_gateway_time_to_first_token_seconds_count", model="qwen3:0.6b") == 2  # the streams
    assert grown("ollama_gateway_slot_wait_seconds_count", model="qwen3:0.6b") == 2  # the native API's
    lines = [json.loads(line) for line in host(gateway).check_output(f"tail -n 4 {REQUEST_LOG}").splitlines()]
    assert [(line["key"], line["prompt_tokens"], line["completion_tokens"]) for line in lines] == [
        (name, str(p), str(c)) for p, c in zip(said["prompt"], said["completion"], strict=True)
    ]
    assert [bool(line["ttft"]) for line in lines] == [False, True, False, True]
    assert all(0 < float(line["ttft"]) <= line["total"] for line in lines if line["ttft"])


def test_a_made_up_model_name_adds_no_series_and_no_secret_reaches_the_metrics():
    """A name served on demand (ollama_gateway_unpinned_models) is the instance's to judge: 404 there, logged as
    asked, counted under no model. A pinned model spelled as Ollama also reads it counts under its one name, and a
    model that is no string under none."""
    user = "key-" + hashlib.sha256(USER.encode()).hexdigest()[:8]
    before = samples("olt-mh-gw")
    for n in range(3):
        body = {"model": f"olt-made-up-{n}:1b", "prompt": "hi", "stream": False}
        assert get("/api/generate", body=body, key=USER).status == 404
    spellings = ("QWEN3:0.6B", "registry.ollama.ai/library/qwen3:0.6b")
    for model in spellings:
        body = {"model": model, "prompt": "hi", "stream": False, "options": {"num_predict": 1}}
        assert get("/api/generate", body=body, key=USER).status == 200
    assert get("/api/generate", body={"model": 7, "prompt": "hi"}, key=USER).status == 400
    # mtail reads the log in order: once the last request (the 400) is counted, so is every one before it
    wait_until(
        lambda: counted(samples("olt-mh-gw"), "ollama_gateway_requests_total", status="400", key=user)
        > counted(before, "ollama_gateway_requests_total", status="400", key=user), 15, "the requests counted"
    )  # fmt: skip
    after = samples("olt-mh-gw")
    for status, model, more in (("404", "", 3), ("200", "qwen3:0.6b", len(spellings)), ("400", "", 1)):
        grew = counted(after, "ollama_gateway_requests_total", status=status, model=model, key=user) - counted(
            before, "ollama_gateway_requests_total", status=status, model=model, key=user
        )
        assert grew >= more, (status, model, grew)  # earlier tests' lines may still be on their way
    text = host("olt-mh-gw").check_output("curl -sf http://127.0.0.1:8081/metrics")
    assert "olt-made-up" not in text
    for label in [f'model="{model}"' for model in spellings] + ['model="7"']:
        assert label not in text
    for secret in (USER, ADMIN, TEAM):
        assert secret not in text
    logged = host("olt-mh-gw").check_output(f"grep -c olt-made-up {REQUEST_LOG}")
    assert int(logged) >= 3  # the audit trail keeps what was asked


def test_neither_logrotate_nor_a_reload_loses_a_line():
    """Requests while Debian's logrotate rotates nginx's logs and nginx reloads: every one is a line in the
    log or the rotated one, and counted once in the metrics."""
    gw = host("olt-mh-gw")
    user = "key-" + hashlib.sha256(USER.encode()).hexdigest()[:8]
    before = samples("olt-mh-gw")
    paths = [f"/olt-rotation-{n}" for n in range(60)]
    logged = f"zcat -f {REQUEST_LOG}* | grep -c olt-rotation- || true"
    with ThreadPoolExecutor(1) as pool:
        statuses = pool.submit(lambda: [get(p, key=USER).status for p in paths])
        wait_until(lambda: int(gw.check_output(logged)) >= 10, 30, "the first requests logged")
        gw.check_output("logrotate -f /etc/logrotate.d/nginx")
        wait_until(lambda: int(gw.check_output(logged)) >= 30, 30, "requests logged after the rotation")
        gw.check_output("systemctl reload nginx")
        assert statuses.result() == [404] * len(paths)
    lines = [json.loads(line) for line in gw.check_output(f"zcat -f {REQUEST_LOG}* | grep olt-rotation-").splitlines()]
    assert sorted(line["path"] for line in lines) == sorted(paths)
    wait_until(
        lambda: counted(samples("olt-mh-gw"), "ollama_gateway_requests_total", key=user, endpoint="other")
        - counted(before, "ollama_gateway_requests_total", key=user, endpoint="other") == len(paths), 15, "every one counted"
    )  # fmt: skip


@pytest.mark.parametrize("source, reaches", [("olt-mh-gw", True), ("olt-mh-gpu2", False)])
def test_instances_are_reachable_only_from_the_gateway(host, source, reaches):
    if host.backend.get_hostname() != source:
        pytest.skip("runs on its source host")
    result = host.run("curl -s -m 3 -o /dev/null -w '%{http_code}' http://10.213.0.21:11435/api/version")
    assert (result.stdout == "200") is reaches
