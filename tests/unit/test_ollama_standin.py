"""The Ollama stand-in behaves like Ollama where a load balancer and the roles can tell."""

import http.client
import json
import threading
import time
import urllib.error

import pytest
import standin_config
import standin_sched
from helpers.waiting import wait_until


def pulled(server, model="qwen3:0.6b"):
    server.pull(model)
    return server


def test_num_parallel_4_serves_four_streams_while_the_fifth_waits(standin):
    server = pulled(standin(OLLAMA_NUM_PARALLEL="4", OLLAMA_STANDIN_TTFT_MS="0", OLLAMA_STANDIN_TOKENS_PER_SEC="10"))
    first_token_at = {}

    def stream(i):
        body = {"model": "qwen3:0.6b", "prompt": f"p{i}", "options": {"num_predict": 15}}
        with server.post("/api/generate", body) as resp:
            first_token_at[i] = time.monotonic()
            for _ in resp:
                pass

    threads = [threading.Thread(target=stream, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    wait_until(lambda: len(first_token_at) == 4, 10, "four first tokens", 0.02)
    fifth = threading.Thread(target=stream, args=(4,))
    fifth.start()
    wait_until(lambda: server.get("/standin/stats")["waiting"] == {"qwen3:0.6b": 1}, 10, "one request waiting", 0.02)
    stats = server.get("/standin/stats")
    assert stats["active"] == {"qwen3:0.6b": 4} and stats["pending"] == 0
    assert [m["slots"] for m in server.get("/standin/ps")["models"]] == [4]
    assert 4 not in first_token_at, "the fifth stream started before a slot was free"
    for t in threads + [fifth]:
        t.join(timeout=10)
    # the fifth got its first token only once one of the four had finished (15 tokens at 10/s)
    assert first_token_at[4] - max(first_token_at[i] for i in range(4)) > 1.0


def statuses_of(server, bodies, path="/api/generate"):
    """POST each body from its own thread; returns the threads and the list their statuses go into."""
    results = []

    def request(body):
        try:
            with server.post(path, body) as resp:
                resp.read()
                results.append(resp.status)
        except urllib.error.HTTPError as exc:
            results.append(exc.code)

    threads = [threading.Thread(target=request, args=(body,)) for body in bodies]
    for t in threads:
        t.start()
    return threads, results


def test_requests_for_a_loaded_model_wait_for_a_slot_without_bound(standin):
    # server/sched.go getRunner hands a loaded runner over past the queue; the runner's semaphore has no bound
    server = pulled(
        standin(
            OLLAMA_NUM_PARALLEL="1",
            OLLAMA_MAX_QUEUE="1",
            OLLAMA_STANDIN_TTFT_MS="0",
            OLLAMA_STANDIN_TOKENS_PER_SEC="100",
        )
    )
    server.post("/api/generate", {"model": "qwen3:0.6b"}).read()  # loaded
    bodies = [
        {"model": "qwen3:0.6b", "prompt": f"p{i}", "stream": False, "options": {"num_predict": 5}} for i in range(8)
    ]
    threads, results = statuses_of(server, bodies)
    wait_until(lambda: server.get("/standin/stats")["waiting"].get("qwen3:0.6b", 0) >= 3, 10, "three waiting", 0.02)
    for t in threads:
        t.join(timeout=20)
    assert results == [200] * 8, "a loaded model's queue has no bound: OLLAMA_MAX_QUEUE is for loads"


def test_max_queue_bounds_the_requests_waiting_for_a_load_with_503(standin):
    server = pulled(standin(OLLAMA_MAX_QUEUE="1", OLLAMA_STANDIN_LOAD_MS="1500"))
    body = {"model": "qwen3:0.6b", "prompt": "p", "stream": False, "options": {"num_predict": 1}}
    first, results = statuses_of(server, [body])
    # taken off the queue, loading
    wait_until(lambda: server.get("/standin/stats")["loading"] == "qwen3:0.6b", 10, "the model loading", 0.02)
    second, more = statuses_of(server, [body])
    wait_until(lambda: server.get("/standin/stats")["pending"] == 1, 10, "the queue (1) full", 0.02)
    with pytest.raises(urllib.error.HTTPError) as refused:
        server.post("/api/generate", body)
    assert refused.value.code == 503
    assert json.load(refused.value)["error"] == "server busy, please try again.  maximum pending requests exceeded"
    for t in first + second:
        t.join(timeout=20)
    assert results + more == [200, 200], "the request loading and the one queued are served"


def test_stream_is_ndjson_token_by_token_with_identity_headers(standin):
    server = pulled(standin(CUDA_VISIBLE_DEVICES="2,3", OLLAMA_STANDIN_TOKENS_PER_SEC="20"))
    body = {"model": "qwen3:0.6b", "messages": [{"role": "user", "content": "hi"}], "options": {"num_predict": 5}}
    with server.post("/api/chat", body) as resp:
        assert resp.headers["Content-Type"] == "application/x-ndjson"
        assert resp.headers["X-Ollama-Instance"].endswith(f":{server.port}")
        gpus = resp.headers["X-Ollama-Gpus"].split(",")
        arrivals, events = [], []
        for line in resp:
            arrivals.append(time.monotonic())
            events.append(json.loads(line))
    spec = json.loads(open(server.env["NVML_SIM_SPEC"]).read())
    assert gpus == [spec["gpus"][2]["uuid"], spec["gpus"][3]["uuid"]]
    assert [e["done"] for e in events] == [False] * 5 + [True]
    assert events[-1]["eval_count"] == 5 and events[-1]["done_reason"] == "length"
    # tokens arrive spread over time (20/s), not in one burst at the end
    assert arrivals[4] - arrivals[0] > 0.15


def test_openai_chat_streams_sse_and_ends_with_done(standin):
    server = pulled(standin())
    body = {"model": "qwen3:0.6b", "messages": [{"role": "user", "content": "hi"}], "stream": True, "max_tokens": 3}
    with server.post("/v1/chat/completions", body) as resp:
        assert resp.headers["Content-Type"] == "text/event-stream"
        data = [line.decode().strip() for line in resp if line.strip()]
    assert data[-1] == "data: [DONE]"
    chunks = [json.loads(d[len("data: ") :]) for d in data[:-1]]
    assert all(c["object"] == "chat.completion.chunk" for c in chunks)
    assert "".join(c["choices"][0]["delta"]["content"] for c in chunks).split() != []
    plain = json.load(server.post("/v1/chat/completions", {**body, "stream": False}))
    assert plain["object"] == "chat.completion" and plain["usage"]["completion_tokens"] == 3


def test_pull_writes_manifest_and_show_returns_gguf_model_info(standin, tmp_path):
    server = standin()
    with server.post("/api/pull", {"model": "llama3.1:8b"}) as resp:
        events = [json.loads(line) for line in resp]
    assert events[0]["status"] == "pulling manifest" and events[-1]["status"] == "success"
    assert any(e.get("completed") == e.get("total") == 4920753328 for e in events)
    manifest = tmp_path / "models/manifests/registry.ollama.ai/library/llama3.1/8b"
    assert json.loads(manifest.read_text())["layers"][0]["size"] == 4920753328
    tags = server.get("/api/tags")["models"]
    assert [(m["name"], m["size"]) for m in tags] == [("llama3.1:8b", 4920753328)]
    info = json.load(server.post("/api/show", {"model": "llama3.1:8b"}))["model_info"]
    assert info["general.architecture"] == "llama"
    assert (info["llama.block_count"], info["llama.attention.head_count_kv"]) == (32, 8)


def test_unknown_model_errors_are_ollamas(standin):
    server = standin()
    with pytest.raises(urllib.error.HTTPError) as missing:
        server.post("/api/generate", {"model": "llama3.1:8b", "prompt": "x"})
    assert missing.value.code == 404
    assert json.load(missing.value)["error"] == 'model "llama3.1:8b" not found, try pulling it first'
    pull = server.cli("pull", "no-such-model:1b")
    assert pull.returncode == 1 and "file does not exist" in pull.stderr


def test_default_context_follows_visible_vram_and_context_length_overrides(standin):
    one_l20 = pulled(standin(CUDA_VISIBLE_DEVICES="0"))
    one_l20.post("/api/generate", {"model": "qwen3:0.6b"}).read()  # empty prompt: load only
    (model,) = one_l20.get("/api/ps")["models"]
    # 48 GiB visible: Ollama would pick 256k, capped at the model's 40960 training context
    assert model["context_length"] == 40960
    (held,) = one_l20.get("/standin/ps")["models"]
    assert held["gpus"] == [json.loads(open(one_l20.env["NVML_SIM_SPEC"]).read())["gpus"][0]["uuid"]]
    fixed = pulled(standin(OLLAMA_CONTEXT_LENGTH="8192"))
    fixed.post("/api/generate", {"model": "qwen3:0.6b"}).read()
    assert fixed.get("/api/ps")["models"][0]["context_length"] == 8192


def test_model_that_outgrows_vram_spills_to_cpu_in_ps(standin):
    server = pulled(
        standin(CUDA_VISIBLE_DEVICES="0", OLLAMA_CONTEXT_LENGTH="131072", OLLAMA_NUM_PARALLEL="4"), "llama3.3:70b"
    )
    server.post("/api/generate", {"model": "llama3.3:70b"}).read()
    (model,) = server.get("/api/ps")["models"]
    assert model["size_vram"] < model["size"], "a 70B at 4x128k cannot fit one 48 GB GPU"
    assert "CPU/GPU" in server.cli("ps").stdout


def test_keep_alive_zero_unloads_and_load_timeout_fails_slow_loads(standin):
    server = pulled(standin())
    server.post("/api/generate", {"model": "qwen3:0.6b"}).read()
    assert len(server.get("/api/ps")["models"]) == 1
    done = json.load(server.post("/api/generate", {"model": "qwen3:0.6b", "keep_alive": 0}))
    assert done["done_reason"] == "unload" and server.get("/api/ps")["models"] == []
    slow = pulled(standin(OLLAMA_STANDIN_LOAD_MS="2000", OLLAMA_LOAD_TIMEOUT="1s"))
    # server/routes.go: an empty prompt with keep_alive 0 expires the runner without scheduling (no load)
    started = time.monotonic()
    done = json.load(slow.post("/api/generate", {"model": "qwen3:0.6b", "keep_alive": 0}))
    assert done["done_reason"] == "unload" and time.monotonic() - started < 1
    with pytest.raises(urllib.error.HTTPError) as failed:
        slow.post("/api/generate", {"model": "qwen3:0.6b", "prompt": "x"})
    assert failed.value.code == 500 and "timed out waiting for llama runner" in json.load(failed.value)["error"]


def test_keep_alive_zero_unloads_once_the_request_is_done(standin):
    server = pulled(standin(OLLAMA_STANDIN_TTFT_MS="0", OLLAMA_STANDIN_TOKENS_PER_SEC="20"))
    body = {"model": "qwen3:0.6b", "prompt": "x", "keep_alive": 0, "options": {"num_predict": 6}}
    with server.post("/api/generate", body) as resp:
        resp.readline()
        assert [m["name"] for m in server.get("/api/ps")["models"]] == ["qwen3:0.6b"], "not while it runs"
        resp.read()
    # not the 5m default keep_alive
    wait_until(lambda: server.get("/api/ps")["models"] == [], 1, "the model unloaded", 0.02)


PS_FIELDS = {"name", "model", "size", "digest", "details", "expires_at", "size_vram", "context_length"}
DETAILS_FIELDS = {"parent_model", "format", "family", "families", "parameter_size", "quantization_level"}


def test_api_ps_has_exactly_ollamas_fields_and_the_topology_is_on_standin_ps(standin):
    # server/routes.go PsHandler, api/types.go ProcessModelResponse and ModelDetails
    server = pulled(standin(CUDA_VISIBLE_DEVICES="1", OLLAMA_NUM_PARALLEL="2"))
    server.post("/api/generate", {"model": "qwen3:0.6b"}).read()
    (model,) = server.get("/api/ps")["models"]
    assert set(model) == PS_FIELDS
    assert set(model["details"]) == DETAILS_FIELDS
    mine = server.get("/standin/ps")
    gpu1 = json.loads(open(server.env["NVML_SIM_SPEC"]).read())["gpus"][1]["uuid"]
    assert mine["instance"].endswith(f":{server.port}") and mine["gpus"] == [gpu1]
    assert mine["env"]["CUDA_VISIBLE_DEVICES"] == "1" and mine["env"]["OLLAMA_NUM_PARALLEL"] == "2"
    (size_vram,) = [m["size_vram"] for m in server.get("/api/ps")["models"]]
    assert mine["models"] == [
        {
            "name": "qwen3:0.6b",
            "gpus": [gpu1],
            "vram_by_gpu": {gpu1: size_vram},
            "slots": 2,
            "context_length": 40960,
            "active": 0,
            "waiting": 0,
            # a load evaluates no prompt: both slots empty (standin_cache)
            "prompt_cache": {
                "slots": [0, 0],
                "saved_prompts": 0,
                "prompt_tokens_evaluated": 0,
                "prompt_tokens_cached": 0,
            },
        }
    ]


def test_another_num_ctx_reloads_once_the_runner_is_idle(standin):
    # server/sched.go needsReload: other runner options (num_ctx) need another runner; processPending expires
    # the loaded one, waits for its requests to finish, then loads again
    server = pulled(
        standin(
            OLLAMA_CONTEXT_LENGTH="8192",
            OLLAMA_STANDIN_LOAD_MS="300",
            OLLAMA_STANDIN_TTFT_MS="0",
            OLLAMA_STANDIN_TOKENS_PER_SEC="20",
        )
    )
    server.post("/api/generate", {"model": "qwen3:0.6b"}).read()
    answers = {}

    def generate(key, options):
        body = {"model": "qwen3:0.6b", "prompt": key, "stream": False, "options": options}
        answers[key] = json.load(server.post("/api/generate", body))
        answers[key]["at"] = time.monotonic()

    running = threading.Thread(target=generate, args=("running", {"num_predict": 20}))
    running.start()
    wait_until(lambda: server.get("/standin/stats")["active"] == {"qwen3:0.6b": 1}, 10, "one request active", 0.02)
    other = threading.Thread(target=generate, args=("other", {"num_ctx": 4096, "num_predict": 1}))
    other.start()
    wait_until(lambda: server.get("/standin/stats")["loading"] == "qwen3:0.6b", 10, "the model loading", 0.02)
    assert server.get("/api/ps")["models"][0]["context_length"] == 8192, "the runner in use is not unloaded"
    running.join(timeout=20)
    other.join(timeout=20)
    assert answers["running"]["eval_count"] == 20, "the request in flight finished on the old runner"
    assert answers["other"]["at"] - answers["running"]["at"] >= 0.2, "loaded again after the runner went idle"
    assert answers["other"]["load_duration"] >= 0.3e9, "the reload pays the load time again"
    assert server.get("/api/ps")["models"][0]["context_length"] == 4096
    same = json.load(server.post("/api/generate", {"model": "qwen3:0.6b", "options": {"num_ctx": 4096}}))
    assert same["load_duration"] < 0.3e9, "the same num_ctx uses the loaded runner"
    back = json.load(server.post("/api/generate", {"model": "qwen3:0.6b"}))
    assert back["load_duration"] >= 0.3e9, "no num_ctx is the default context (8192): another reload"
    assert server.get("/api/ps")["models"][0]["context_length"] == 8192


def test_a_reload_at_a_context_that_no_longer_fits_spills_to_cpu(standin):
    server = pulled(
        standin(CUDA_VISIBLE_DEVICES="0", OLLAMA_NUM_PARALLEL="4", OLLAMA_CONTEXT_LENGTH="8192"), "llama3.1:8b"
    )
    server.post("/api/generate", {"model": "llama3.1:8b"}).read()
    (model,) = server.get("/api/ps")["models"]
    assert model["size_vram"] == model["size"]
    body = {"model": "llama3.1:8b", "prompt": "x", "stream": False, "options": {"num_ctx": 131072, "num_predict": 1}}
    server.post("/api/generate", body).read()
    (model,) = server.get("/api/ps")["models"]
    # 4 slots x 128k x 128 KiB per token: 64 GiB of KV cache on a 48 GB L20
    assert model["context_length"] == 131072 and model["size_vram"] < model["size"]


def test_load_time_grows_with_the_model_size(standin):
    cfg = standin_config.Config({"OLLAMA_STANDIN_KNOBS": "/nonexistent", "NVML_SIM_SPEC": "/nonexistent"})
    assert 26 < cfg.load_seconds(42520413916) < 28, "the defaults: a 70B Q4 takes ~27 s"
    server = standin(OLLAMA_STANDIN_LOAD_MS="100", OLLAMA_STANDIN_LOAD_MIB_S="1000")
    loads = {}
    for name in ("qwen3:0.6b", "nomic-embed-text"):  # 498 MiB and 262 MiB
        pulled(server, name)
        answer = json.load(server.post("/api/embed" if "embed" in name else "/api/generate", {"model": name}))
        loads[name] = answer["load_duration"] / 1e9
    assert 0.59 <= loads["qwen3:0.6b"] < 1.5
    assert 0.36 <= loads["nomic-embed-text"] < loads["qwen3:0.6b"]


def test_embedding_models_get_one_slot_whatever_num_parallel(standin):
    # server/sched.go Scheduler.load: numParallel 1 for models without the completion capability
    server = pulled(standin(OLLAMA_NUM_PARALLEL="4", OLLAMA_STANDIN_TTFT_MS="500"), "nomic-embed-text")
    name = "nomic-embed-text:latest"
    threads, results = statuses_of(server, [{"model": name, "input": f"t{i}"} for i in range(2)], "/api/embed")
    wait_until(
        lambda: server.get("/standin/stats")["waiting"].get(name) == 1, 10, f"one request for {name} waiting", 0.02
    )
    assert server.get("/standin/stats")["active"] == {name: 1}, "the second request waits for the one slot"
    assert [m["slots"] for m in server.get("/standin/ps")["models"]] == [1]
    for t in threads:
        t.join(timeout=10)
    assert results == [200, 200]
    # and its KV cache is sized for one slot: as large as with OLLAMA_NUM_PARALLEL=1
    single = pulled(standin(OLLAMA_NUM_PARALLEL="1"), "nomic-embed-text")
    single.post("/api/embed", {"model": name, "input": "x"}).read()
    assert single.get("/api/ps")["models"][0]["size"] == server.get("/api/ps")["models"][0]["size"]
    # an empty /api/generate with keep_alive 0 unloads it (routes.go: before the capability check), while
    # one with a prompt is refused: an embedding model does not generate
    with pytest.raises(urllib.error.HTTPError) as refused:
        single.post("/api/generate", {"model": name, "prompt": "x"})
    assert refused.value.code == 400
    done = json.load(single.post("/api/generate", {"model": name, "keep_alive": 0}))
    assert done["done_reason"] == "unload" and single.get("/api/ps")["models"] == []


@pytest.mark.parametrize(
    "family", ["mllama", "qwen3vl", "qwen35", "qwen3next", "lfm2", "nemotron_h", "qwen3vlmoe", "nemotron_h_moe"]
)
def test_architectures_ollama_runs_with_one_slot(family, capsys):
    assert standin_sched.model_parallel(4, {"family": family, "capabilities": ["completion", "vision"]}) == 1
    assert 'msg="model architecture does not currently support parallel requests"' in capsys.readouterr().err
    assert standin_sched.model_parallel(4, {"family": "llama", "capabilities": ["completion"]}) == 4
    assert standin_sched.model_parallel(4, {"family": "nomic-bert", "capabilities": ["embedding"]}) == 1


def test_knobs_come_from_the_file_and_the_environment_wins(standin, tmp_path):
    # the fixture points OLLAMA_STANDIN_KNOBS at this file
    (tmp_path / "standin-knobs.env").write_text(
        '# written by simulated_host\nOLLAMA_STANDIN_TOKENS="3"\n\nOLLAMA_NUM_PARALLEL=4\n'
    )
    body = {"model": "qwen3:0.6b", "prompt": "x", "stream": False}
    from_file = pulled(standin())
    assert json.load(from_file.post("/api/generate", body))["eval_count"] == 3
    mine = from_file.get("/standin/ps")
    assert mine["knobs"]["OLLAMA_STANDIN_TOKENS"] == "3"
    assert mine["models"][0]["slots"] == 1, "the file sets only OLLAMA_STANDIN_* knobs"
    from_env = pulled(standin(OLLAMA_STANDIN_TOKENS="5"))
    assert json.load(from_env.post("/api/generate", body))["eval_count"] == 5


def test_embed_returns_unit_vectors_of_the_models_width(standin):
    server = pulled(standin(), "nomic-embed-text")
    answer = json.load(server.post("/api/embed", {"model": "nomic-embed-text", "input": ["a", "b"]}))
    assert len(answer["embeddings"]) == 2 and len(answer["embeddings"][0]) == 768
    assert abs(sum(x * x for x in answer["embeddings"][0]) - 1) < 1e-3


def test_cli_version_list_and_ps(standin):
    server = pulled(standin())
    assert server.cli("--version").stdout.strip() == "ollama version is 0.33.0"
    assert "qwen3:0.6b" in server.cli("list").stdout
    server.post("/api/generate", {"model": "qwen3:0.6b"}).read()
    assert "100% GPU" in server.cli("ps").stdout


def raw_request(port: int, host_header: str, method: str = "GET", path: str = "/api/version", body: bytes = b""):
    """One request with a chosen Host header; returns (status, body) and whether the connection stayed usable."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    conn.putrequest(method, path, skip_host=True)
    conn.putheader("Host", host_header)
    if body:
        conn.putheader("Content-Length", str(len(body)))
    conn.endheaders(body or None)
    answer = conn.getresponse()
    first = (answer.status, answer.read())
    conn.request("GET", "/api/version")  # same connection, a local Host
    again = conn.getresponse()
    again.read()
    conn.close()
    return first, again.status


# Host headers as Ollama's DNS-rebinding guard (server/routes.go allowedHostsMiddleware) judges them when the
# server listens on loopback: what a gateway that passed its clients' Host on to 127.0.0.1 would meet.
REFUSED_HOSTS = [
    "ollama.example.com",
    "ollama.example.com:11434",
    "gateway.corp",
    "8.8.8.8",
    "[2001:db8::1]:80",
    "[::1]:80:90",  # net.SplitHostPort fails: the whole value is no address
]
LOCAL_HOSTS = [
    "localhost",
    "localhost:11434",
    "127.0.0.1:11434",
    "10.213.0.10",
    "192.168.1.5:80",
    "[::1]:11434",
    "gpu1.local",
    "ollama.internal",
    "a.localhost",
    "0.0.0.0",
    "[::ffff:127.0.0.1]:80",  # IPv4-mapped loopback (netip unmaps it)
    "",
]


def test_loopback_listener_refuses_a_host_that_is_not_local_with_403(standin):
    server = standin()
    for host_header in REFUSED_HOSTS:
        (status, body), after = raw_request(server.port, host_header)
        assert (status, body) == (403, b""), host_header
        assert after == 200, host_header  # the connection stays usable
        for method, path in (("POST", "/api/generate"), ("GET", "/api/tags"), ("GET", "/standin/ps")):
            (status, _), after = raw_request(server.port, host_header, method, path, b'{"model":"x"}')
            assert (status, after) == (403, 200), (host_header, method)  # the body was read once, not run


def test_loopback_listener_accepts_local_hosts(standin):
    server = standin()
    for host_header in LOCAL_HOSTS:
        (status, _), _ = raw_request(server.port, host_header)
        assert status == 200, host_header


def post_raw(server, path: str, body: bytes):
    """POST a raw body; returns (status, parsed JSON) and the status of a second request on the same connection."""
    (status, answer), again = raw_request(server.port, "localhost", "POST", path, body)
    return (status, json.loads(answer or b"null")), again


def test_wrong_types_are_answered_as_ollama_does_and_the_connection_stays(standin):
    # api/types.go fields and Options.FromMap; server/routes.go answers decode errors 400, option errors 500
    server = pulled(standin())
    cases = [
        (
            "/api/generate",
            {"model": {"name": "qwen3:0.6b"}},
            400,
            "json: cannot unmarshal object into Go struct field GenerateRequest.model of type string",
        ),
        (
            "/api/generate",
            {"model": "qwen3:0.6b", "prompt": 5},
            400,
            "json: cannot unmarshal number into Go struct field GenerateRequest.prompt of type string",
        ),
        (
            "/api/chat",
            {"model": "qwen3:0.6b", "messages": "hi"},
            400,
            "json: cannot unmarshal string into Go struct field ChatRequest.messages of type []api.Message",
        ),
        (
            "/api/generate",
            {"model": "qwen3:0.6b", "options": [1]},
            400,
            "json: cannot unmarshal array into Go struct field GenerateRequest.options of type map[string]interface {}",
        ),
        (
            "/api/generate",
            {"model": "qwen3:0.6b", "prompt": "hi", "options": {"num_ctx": "8192"}},
            500,
            'option "num_ctx" must be of type integer',
        ),
        (
            "/api/chat",
            {"model": "qwen3:0.6b", "messages": [{"role": "user", "content": "hi"}], "options": {"num_predict": True}},
            500,
            'option "num_predict" must be of type integer',
        ),
    ]
    for path, body, status, message in cases:
        (got_status, got), after = post_raw(server, path, json.dumps(body).encode())
        assert (got_status, got, after) == (status, {"error": message}, 200), body


def test_keys_match_case_insensitively_as_go_decodes_them(standin):
    # encoding/json: "Model" fills GenerateRequest.Model, so Ollama serves {"Model": ...} like {"model": ...};
    # keys are assigned in the body's order, so of "Model" and "model" the last one wins
    server = pulled(standin())
    body = {"Model": "nope:1b", "model": "qwen3:0.6b", "PROMPT": "hi", "stream": False, "options": {"num_predict": 2}}
    (status, answer), _ = post_raw(server, "/api/generate", json.dumps(body).encode())
    assert status == 200 and answer["model"] == "qwen3:0.6b" and answer["eval_count"] == 2


def test_v1_models_retrieve_answers_as_ollamas_openai_layer(standin):
    # server/routes.go GET /v1/models/:model → middleware/openai.go RetrieveWriter (openai.ToModel / NewError)
    server = pulled(standin())
    model = server.get("/v1/models/qwen3:0.6b")
    assert {k: model[k] for k in ("id", "object", "owned_by")} == {
        "id": "qwen3:0.6b",
        "object": "model",
        "owned_by": "library",
    }
    assert model["created"] > 1_700_000_000
    with pytest.raises(urllib.error.HTTPError) as missing:
        server.get("/v1/models/nope:1b")
    assert missing.value.code == 404
    assert json.load(missing.value) == {
        "error": {"message": "model 'nope:1b' not found", "type": "not_found_error", "param": None, "code": None}
    }


def test_an_unread_body_is_discarded_as_gos_server_does(standin):
    # net/http discards up to 256 KiB of a body the handler did not read: it never runs as a request
    server = pulled(standin())
    copy = json.dumps({"source": "qwen3:0.6b", "destination": "smuggled:1b"}).encode()
    inner = b"POST /api/copy HTTP/1.1\r\nHost: localhost\r\nContent-Length: %d\r\n\r\n%s" % (len(copy), copy)
    for method in ("GET", "OPTIONS"):
        (status, _), after = raw_request(server.port, "localhost", method, "/api/tags", inner)
        assert (status, after) in ((200, 200), (204, 200)), method
    assert "smuggled:1b" not in {m["name"] for m in server.get("/api/tags")["models"]}


def test_anthropic_messages_and_openai_responses_answer_in_their_own_shapes(standin):
    # /v1/messages (anthropic/anthropic.go ToMessagesResponse) and /v1/responses (openai/responses.go), which
    # Anthropic-style clients and the OpenAI Responses API use; the official openai client reads the latter
    import openai

    server = pulled(standin(OLLAMA_STANDIN_TTFT_MS="0", OLLAMA_STANDIN_TOKENS_PER_SEC="1000"))
    ask = {"model": "qwen3:0.6b", "max_tokens": 3, "messages": [{"role": "user", "content": "hi"}]}
    message = json.load(server.post("/v1/messages", ask))
    assert (message["type"], message["role"], message["model"], message["stop_reason"]) == (
        "message", "assistant", "qwen3:0.6b", "max_tokens"
    )  # fmt: skip
    assert message["content"][0]["type"] == "text" and len(message["content"][0]["text"].split()) == 3
    with server.post("/v1/messages", {**ask, "stream": True}) as resp:
        events = [line.split(b": ", 1)[1].decode().strip() for line in resp if line.startswith(b"event: ")]
    assert events == ["message_start", "content_block_start"] + ["content_block_delta"] * 3 + [
        "content_block_stop", "message_delta", "message_stop"
    ]  # fmt: skip
    api = openai.OpenAI(base_url=f"{server.url}/v1", api_key="unused")
    answer = api.responses.create(model="qwen3:0.6b", input="hi", max_output_tokens=4)
    assert answer.status == "completed" and len(answer.output_text.split()) == 4
    streamed = [e.type for e in api.responses.create(model="qwen3:0.6b", input="hi", max_output_tokens=2, stream=True)]
    assert streamed == [
        "response.created",
        "response.output_text.delta",
        "response.output_text.delta",
        "response.completed",
    ]


def test_the_openai_layer_drops_keep_alive_and_options_and_api_status_answers(standin):
    # openai/openai.go builds the native request from OpenAI's fields only; server/routes.go StatusHandler
    server = pulled(standin(OLLAMA_STANDIN_TTFT_MS="0", OLLAMA_NO_CLOUD="1"))
    server.post("/api/generate", {"model": "qwen3:0.6b", "keep_alive": -1}).read()
    context = server.get("/api/ps")["models"][0]["context_length"]
    body = {"model": "qwen3:0.6b", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 1}
    server.post("/v1/chat/completions", {**body, "keep_alive": 0, "options": {"num_ctx": 2 * context}}).read()
    assert [(m["name"], m["context_length"]) for m in server.get("/api/ps")["models"]] == [("qwen3:0.6b", context)]
    assert server.get("/api/status") == {"cloud": {"disabled": True, "source": "env"}}


def test_audio_transcriptions_read_the_model_from_the_form(standin):
    # middleware/openai.go TranscriptionMiddleware: ParseMultipartForm, FormValue("model"), FormFile("file")
    import openai

    server = pulled(standin(OLLAMA_STANDIN_TTFT_MS="0", OLLAMA_STANDIN_TOKENS_PER_SEC="1000"))
    api = openai.OpenAI(base_url=f"{server.url}/v1", api_key="unused")
    text = api.audio.transcriptions.create(model="qwen3:0.6b", file=("a.wav", b"RIFF" + b"\0" * 64, "audio/wav"))
    assert text.text
    with pytest.raises(openai.NotFoundError):
        api.audio.transcriptions.create(model="nope:1b", file=("a.wav", b"RIFF", "audio/wav"))
