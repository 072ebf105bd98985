"""Careless and hostile clients against the deployed gateway: they cannot change what the plan pinned,
route around it, shut other clients out, or grow nginx's memory without bound. One test per finding of
issue 13 (probed 2026-11-22). Traffic only to the test host, bounded in count and time."""

import asyncio
import contextlib
import http.client
import json
import resource
import shlex
import socket
import subprocess
import time
from pathlib import Path

from helpers.ollama_client import call
from helpers.waiting import wait_until

ADDRESS = "10.213.0.11"
GATEWAY = f"http://{ADDRESS}:11434"
ADMIN = "olt-test-admin-key-0001"
PORTS = {"llama3.1:8b": 11435, "llama3.3:70b": 11436, "qwen3:0.6b": 11437}
SERVED = "this gateway serves llama3.1:8b, llama3.3:70b, qwen3:0.6b"
# What nginx may grow by while 100 clients upload 4 MB each and stall (docs/gateway.md, "Security"): the 128 KiB body
# buffer per upload (12.5 MiB) and slack; before, each body sat whole in memory (400 MB).
RSS_BUDGET_MIB = 32


def generate(model, **extra):
    return {"model": model, "prompt": "hi", "stream": False, "options": {"num_predict": 1}, **extra}


def loaded(host):
    """Every instance's /api/ps, straight from the instance: model → (port, context, size, size_vram, expiry)."""
    models = {}
    for port in PORTS.values():
        for m in json.loads(host.check_output(f"curl -sf http://127.0.0.1:{port}/api/ps"))["models"]:
            models[m["name"]] = (port, m["context_length"], m["size"], m["size_vram"], m["expires_at"])
    return models


def post_raw(path, data: bytes, headers=None):
    conn = http.client.HTTPConnection(ADDRESS, 11434, timeout=30)
    try:
        conn.request("POST", path, body=data, headers={"Content-Type": "application/json", **(headers or {})})
        resp = conn.getresponse()
        return resp.status, {k.lower(): v for k, v in resp.getheaders()}, resp.read()
    finally:
        conn.close()


def start_upload(length: int, start: bytes, timeout: float) -> socket.socket:
    """A connection that declares a generate body of LENGTH bytes and has sent only START of it."""
    conn = socket.create_connection((ADDRESS, 11434), timeout=timeout)
    conn.sendall(
        b"POST /api/generate HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        b"Content-Length: %d\r\n\r\n%s" % (length, start)
    )
    return conn


def test_a_client_cannot_unload_a_pinned_model(host):
    """{"keep_alive": 0} from anyone unloaded the pinned model; Go matches "KEEP_ALIVE" and a Kelvin-sign k too."""
    before = loaded(host)
    for spelling in ("keep_alive", "KEEP_ALIVE", "\u212aeep_alive"):
        for value in (0, "5m"):
            answer = call(f"{GATEWAY}/api/generate", generate("llama3.1:8b", **{spelling: value}))
            assert answer.status == 200 and answer.headers["x-ollama-gateway-guarded"] == "keep_alive", spelling
    time.sleep(1)  # the stand-in unloads a keep_alive-0 model as the request ends, as Ollama does
    assert loaded(host) == before  # still there, still pinned (same expiry), same context


def test_a_client_cannot_reload_a_pinned_model_at_another_context(host):
    """ "options": {"num_ctx": 131072} loaded the model again at 68.8 GiB on a group planned for 8.8. Any
    num_ctx goes (instances of one model may plan different contexts), and so does "shift", which reloads
    the model when it differs from the runner's (server/sched.go needsReload)."""
    before = loaded(host)
    planned = before["llama3.1:8b"][1]
    for option, value in (("num_ctx", 131072), ("num_ctx", planned), ("num_gpu", 0), ("num_batch", 7)):
        answer = call(f"{GATEWAY}/api/generate", generate("llama3.1:8b", options={"num_predict": 1, option: value}))
        assert answer.status == 200 and answer.headers["x-ollama-gateway-guarded"] == f"options.{option}"
    for spelling in ("shift", "SHIFT", "\u017fhift"):
        answer = call(f"{GATEWAY}/api/chat", {"model": "llama3.1:8b", "stream": False, spelling: False})
        assert answer.status == 200 and answer.headers["x-ollama-gateway-guarded"] == "shift", spelling
    # Go merges every "options" object into one map (issue 23): the router took the last one only, and the first
    # one's num_ctx reached Ollama; now it reads them as Go does, whatever the spelling of the second key
    for second in ("options", "Options", "option\u017f", "\\u006fptions"):
        body = (
            '{"model":"llama3.1:8b","prompt":"hi","stream":false,"options":{"num_ctx":131072},"%s":{"num_predict":1}}'
        )
        status, headers, _ = post_raw("/api/generate", (body % second).encode())
        assert status == 200 and headers["x-ollama-gateway-guarded"] == "options.num_ctx", second
    assert loaded(host) == before
    # a large body is not written again (it would stall a worker): the client is told what to leave out
    big = generate("llama3.1:8b", prompt="z" * 1_200_000, keep_alive=0)
    refused = call(f"{GATEWAY}/api/generate", big)
    assert refused.status == 400 and "leave them out" in refused.json()["error"]
    del big["keep_alive"]
    answer = call(f"{GATEWAY}/api/generate", big)
    assert answer.status == 200 and answer.headers["x-ollama-instance"] == "olt-default-gpu1:11435"


def test_an_admin_key_passes_the_body_as_it_is():
    answer = call(f"{GATEWAY}/api/generate", generate("qwen3:0.6b", keep_alive=-1), key=ADMIN)
    assert answer.status == 200 and "x-ollama-gateway-guarded" not in answer.headers


def test_a_pinned_model_loaded_again_without_keep_alive_stays_pinned(host):
    """A pinned model loaded again any other way than by the warm-up (here an admin's num_ctx; an eviction or
    a runner's restart alike) took OLLAMA_KEEP_ALIVE, 5m, and expired (issue 24). An instance that pins
    models runs with -1: the model stays pinned, and the admin's second request puts the planned context back."""
    before = loaded(host)
    context = before["llama3.1:8b"][1]
    for num_ctx in (context // 2, context):
        options = {"num_predict": 1, "num_ctx": num_ctx}
        answer = call(f"{GATEWAY}/api/generate", generate("llama3.1:8b", options=options), key=ADMIN)
        assert answer.status == 200
        now = loaded(host)["llama3.1:8b"]
        assert now[1] == num_ctx and now[4].startswith("2318"), now  # reloaded, not counting down
    assert loaded(host) == before


def test_every_spelling_of_a_pinned_model_reaches_its_instances():
    """registry.ollama.ai/library/llama3.3:70b went to the default upstream and loaded the 70B everywhere."""
    for name in (
        "registry.ollama.ai/library/llama3.3:70b",
        "https://registry.ollama.ai/library/llama3.3:70b",
        "library/llama3.3:70b",
        "LLAMA3.3:70B",
        " llama3.3:70b ",
        "llama3.3:70b:local",
    ):
        answer = call(f"{GATEWAY}/api/generate", generate(name))
        assert answer.status == 200 and answer.headers["x-ollama-instance"] == "olt-default-gpu1:11436", name
    for key in ("Model", "MODEL"):
        answer = call(f"{GATEWAY}/api/chat", {key: "library/qwen3:0.6b", "messages": [], "stream": False})
        assert answer.status == 200 and answer.headers["x-ollama-instance"] == "olt-default-gpu1:11437", key


def test_a_body_the_router_cannot_read_exactly_is_refused():
    """Ollama (Go) ignores bytes after the first JSON value and takes the last of "model"/"Model": a router
    that guessed differently from Ollama would route one model and load another."""
    for body in (
        b'{"model": "qwen3:0.6b"} {"model": "llama3.3:70b"}',
        b'{"model": "qwen3:0.6b", "Model": "llama3.3:70b"}',
        b'{"model": "llama3.3:70b@sha256:0123"}',
        b'{"model": 7}',
        b"[]",
        b"not json",
        b"",
    ):
        status, headers, answer = post_raw("/api/generate", body)
        assert status == 400 and headers["content-type"].startswith("application/json"), body
        assert json.loads(answer)["error"], body


def test_every_guarded_field_given_twice_is_guarded(host):
    """Go decodes each of two equal keys (any case) into the field, the last scalar winning and objects merged
    (issue 23); the router reads a body's structure with long strings left out: both kinds mixed here."""
    before = loaded(host)
    prompt = '"prompt": "' + "a long prompt, " * 100 + '"'
    stop = "s" * 100
    bodies = {
        "keep_alive": f'"keep_alive": -1, {prompt}, "KEEP_ALIVE": 0',
        "shift": f'"shift": false, {prompt}, "\\u0073hift": false',
        "options.num_ctx": f'"options": {{"num_ctx": 131072, "stop": ["{stop}"]}}, {prompt}, "Options": {{"num_predict": 1}}',
    }
    for guarded, members in bodies.items():
        body = f'{{"model": "llama3.1:8b", "stream": false, {members}}}'
        status, headers, _ = post_raw("/api/generate", body.encode())
        assert status == 200 and headers["x-ollama-gateway-guarded"] == guarded, guarded
    status, _, answer = post_raw(
        "/api/generate", (f'{{"model": "llama3.1:8b", {prompt}, "MODEL": "qwen3:0.6b"}}').encode()
    )
    assert status == 400 and "more than once" in json.loads(answer)["error"]
    time.sleep(1)  # as in the keep_alive test: an unload would show once the request ends
    assert loaded(host) == before


# What one request may cost an nginx worker, whatever its body (docs/gateway.md, "What a request costs the gateway"):
# the body read from its file (up to ollama_gateway_max_body_size, 16 MiB) and at most 1 MiB of JSON
# structure with at most 65,536 arrays and objects parsed.
ROUTER_BOUND_MIB = 64


def worst_bodies():
    """name → (body, status): the shapes that cost njs most per byte, at the body cap or at the router's limit."""
    cap = 16 * 2**20 - 4096
    head = '{"model": "qwen3:0.6b", "stream": false, "options": {"num_predict": 1}, '
    return {
        "16 MiB of small keys": ((head + ",".join(f'"{n:x}":0' for n in range(cap // 11)) + "}").encode(), 413),
        "16 MiB of numbers": ((head + '"x": [' + ",".join(["0"] * (cap // 2)) + "]}").encode(), 413),
        "1 MiB of empty objects": ((head + '"x": [' + ",".join(["{}"] * 349_000) + "]}").encode(), 413),
        "65,000 empty arrays": ((head + '"x": [' + ",".join(["[]"] * 65_000) + "]}").encode(), 200),
        "16 MiB of 66-byte strings": (
            (head + '"x": [' + ",".join(['"' + "s" * 66 + '"'] * (cap // 69)) + "]}").encode(),
            200,
        ),
        "130,000 empty strings (260,000 quote marks)": (
            (head + '"x": [' + ",".join(['""'] * 130_000) + "]}").encode(),
            200,
        ),
        "a context of 128k numbers": ((head + f'"context": {json.dumps(list(range(131072)))}}}').encode(), 200),
        "a 12 MB image": ((head + '"prompt": "?", "images": ["%s"]}' % ("QUJD" * 3_000_000)).encode(), 200),
    }


def test_no_body_costs_a_worker_more_than_the_routers_bound(host):
    """A body of many small keys grew a worker by 3.1 GB per MB and a 14 MB one by 23 GB, until the OOM killer
    (issue 23). Each worker's peak RSS is reset (clear_refs 5) and read after the worst bodies, one at a time."""
    workers = host.check_output("pgrep -f 'nginx: worker process'").split()
    rss = {}
    for pid in workers:
        host.run_expect([0], f"echo 5 > /proc/{pid}/clear_refs")
        rss[pid] = int(host.check_output(f"awk '/^VmRSS/ {{print $2}}' /proc/{pid}/status"))
    for name, (body, status) in worst_bodies().items():
        seen, headers, answer = post_raw("/api/generate", body)
        assert seen == status and headers["content-type"].startswith("application/json"), (name, answer[:200])
        if status == 413:
            assert "more JSON than the gateway reads" in json.loads(answer)["error"], name
    grown = {}
    for pid in workers:
        peak = int(host.check_output(f"awk '/^VmHWM/ {{print $2}}' /proc/{pid}/status"))
        grown[pid] = (peak - rss[pid]) / 1024
    # for the CI log's reader (the README's bound): what each worker grew by
    logs = Path(__file__).resolve().parents[3] / ".cache" / "test-logs"
    logs.mkdir(parents=True, exist_ok=True)
    with (logs / "router-bound.log").open("a") as log:
        log.write(f"peak RSS over the worst bodies, per worker: {', '.join(f'+{g:.1f} MiB' for g in grown.values())}\n")
    assert max(grown.values()) < ROUTER_BOUND_MIB


def test_a_model_pinned_nowhere_is_refused_and_loads_nowhere(host):
    before = {name: where[0] for name, where in loaded(host).items()}
    for name in ("mistral:7b", "ollama.com/library/llama3.3:70b"):
        answer = call(f"{GATEWAY}/api/generate", generate(name))
        assert answer.status == 404 and SERVED in answer.json()["error"], name
    # a cloud model would be sent on to ollama.com by Ollama (modelref): refused before any instance sees it
    for name in ("llama3.3:70b-cloud", "gpt-oss:120b-cloud", "qwen3:cloud"):
        answer = call(f"{GATEWAY}/api/generate", generate(name))
        assert answer.status == 400 and "cloud models are not served" in answer.json()["error"], name
    answer = call(f"{GATEWAY}/v1/chat/completions", {"model": "mistral:7b", "messages": []})
    assert answer.status == 404 and SERVED in answer.json()["error"]["message"]
    assert {name: where[0] for name, where in loaded(host).items()} == before == PORTS


def refused_503(conns: list) -> list:
    """The non-blocking connections that have an answer waiting, and it is a 503 (peeked, left unread)."""
    refused = []
    for conn in conns:
        try:
            if conn.recv(64, socket.MSG_PEEK).startswith(b"HTTP/1.1 503 "):
                refused.append(conn)
        except BlockingIOError:
            pass
    return refused


def test_slow_uploads_hold_no_admission_slot(host):
    """525 connections that never finished their bodies held every slot for 60 s: everyone else got 503. Then
    one address could hold 256 of the 519 (7 slots + queue 512), so three held them all (issue 23). Now a
    request counts against the slots once its body is in: 600 stalled uploads from one address hold none, and
    that address and another are still served."""
    stalled = []
    try:
        for _ in range(600):
            stalled.append(start_upload(1000, b"{", timeout=10))
        for conn in stalled:
            conn.setblocking(False)
        mine = call(f"{GATEWAY}/api/generate", generate("qwen3:0.6b"))
        assert mine.status == 200  # the same address: its uploads count for nothing
        other = host.run(
            f"curl -s -o /dev/null -w '%{{http_code}}' --max-time 20 {GATEWAY}/api/generate "
            """-d '{"model": "qwen3:0.6b", "prompt": "hi", "stream": false, "options": {"num_predict": 1}}'"""
        )
        assert other.stdout == "200"
        assert refused_503(stalled) == []
    finally:
        for conn in stalled:
            conn.close()


@contextlib.contextmanager
def second_address():
    """Another client address on the controller (the test bridge), for a client that is not the flooder."""
    address = "10.213.0.250"
    subprocess.run(["ip", "addr", "add", f"{address}/24", "dev", "olt-br0"], check=True)
    try:
        yield address
    finally:
        subprocess.run(["ip", "addr", "del", f"{address}/24", "dev", "olt-br0"], check=True)


def test_a_connection_flood_from_one_address_stops_at_the_firewall(host):
    """One address opening thousands of sockets that send their headers a byte at a time used up nginx's
    connections: other clients' connections closed unanswered (issue 23). nftables now resets that address's
    connections past ollama_gateway_client_sockets (1024), before nginx, and another address is served."""
    resource.setrlimit(resource.RLIMIT_NOFILE, (4096, resource.getrlimit(resource.RLIMIT_NOFILE)[1]))
    held, reset = [], 0
    try:
        for _ in range(1200):
            try:
                conn = socket.create_connection((ADDRESS, 11434), timeout=5)
                conn.sendall(b"P")  # the first byte of a request line that never ends
                held.append(conn)
            except OSError:  # reset by the firewall
                reset += 1
        print(f"one address: {len(held)} connections held, {reset} reset")
        assert 1000 <= len(held) <= 1024 and reset == 1200 - len(held)
        with second_address() as other:
            conn = http.client.HTTPConnection(ADDRESS, 11434, timeout=30, source_address=(other, 0))
            conn.request(
                "POST",
                "/api/generate",
                body=json.dumps(generate("qwen3:0.6b")),
                headers={"Content-Type": "application/json"},
            )
            assert conn.getresponse().status == 200
            conn.close()
    finally:
        for conn in held:
            conn.close()
        # The kernel's count (nf_conncount) drops closed connections only as new ones from the address arrive, a
        # few at each: the address is let in again after some attempts, which a test must wait for.
        wait_until(lambda: reaches(ADDRESS, 11434), 60, "this address let in again", step=0.05)
    rules = host.check_output("nft list table inet ollama_gateway")
    assert "ct count over 1024" in rules


def reaches(address: str, port: int) -> bool:
    try:
        socket.create_connection((address, port), timeout=2).close()
        return True
    except OSError:
        return False


def test_input_an_instance_chokes_on_does_not_eject_it(host):
    """Four requests that made an instance drop its connection made nginx's passive checks answer 502 to
    everyone for 11 s. Ejection is the active health checker's alone: no server has max_fails."""
    servers = [
        line
        for line in host.check_output("cat /etc/nginx/ollama-gateway/upstreams.conf").splitlines()
        if line.strip().startswith("server ")
    ]
    assert servers and all(" max_fails=0" in line for line in servers)
    bad = generate("qwen3:0.6b", options={"num_predict": 1, "temperature": "hot"})
    assert {call(f"{GATEWAY}/api/generate", bad).status for _ in range(6)} <= {400, 500}
    assert call(f"{GATEWAY}/api/generate", generate("qwen3:0.6b")).status == 200


def test_slow_large_uploads_keep_nginx_within_its_memory_budget(host):
    """300 slow 20 MB uploads grew nginx to 2.6 GB: each body was held whole in memory. Now a body beyond
    128 KiB goes to disk as it arrives. Peak RSS of all nginx processes while 100 clients stall mid-upload."""
    sampler = (
        "for i in $(seq 60); do ps -C nginx -o rss= | awk '{s+=$1} END {print s}'; sleep 0.25; done"
        " > /tmp/olt-nginx-rss.log"
    )
    host.check_output(f"systemd-run --quiet --collect --unit olt-nginx-rss sh -c {shlex.quote(sampler)}")
    chunk = b"x" * 65536
    uploads = []
    try:
        for _ in range(100):
            uploads.append(start_upload(12_000_000, b'{"model": "qwen3:0.6b", "prompt": "', timeout=30))
        for _ in range(64):  # 4 MB each, then they stall
            for conn in uploads:
                conn.sendall(chunk)
        time.sleep(3)
    finally:
        for conn in uploads:
            conn.close()
    time.sleep(12)  # the sampler's 15 s
    samples = [int(n) / 1024 for n in host.check_output("cat /tmp/olt-nginx-rss.log").split()]
    print(f"nginx RSS: {samples[0]:.0f} MiB before, {max(samples):.0f} MiB at the peak of 100 stalled 4 MB uploads")
    assert max(samples) - samples[0] < RSS_BUDGET_MIB
    # a whole body beyond the buffer (read from disk by the router), sent chunked, is still routed by its model
    prompt = "y" * 1_500_000
    body = json.dumps({"prompt": prompt, "stream": False, "options": {"num_predict": 1}, "model": "llama3.3:70b"})
    conn = http.client.HTTPConnection(ADDRESS, 11434, timeout=30)
    conn.request(
        "POST",
        "/api/generate",
        body=iter([body[:700_000].encode(), body[700_000:].encode()]),
        headers={"Content-Type": "application/json"},
        encode_chunked=True,
    )
    resp = conn.getresponse()
    assert resp.status == 200 and resp.getheader("X-Ollama-Instance") == "olt-default-gpu1:11436"
    conn.close()


async def one_client(request: bytes):
    """Status and Retry-After of one request on its own connection; 0 when the connection failed."""
    try:
        reader, writer = await asyncio.wait_for(asyncio.open_connection(ADDRESS, 11434), 30)
        writer.write(request)
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 60)
        writer.close()
        lines = head.decode().split("\r\n")
        headers = dict(line.split(": ", 1) for line in lines[1:] if ": " in line)
        return int(lines[0].split()[1]), headers.get("Retry-After")
    except (TimeoutError, OSError, asyncio.IncompleteReadError) as exc:
        return 0, type(exc).__name__


def test_a_thousand_clients_at_once_each_get_an_answer():
    """At 1000 simultaneous streams 118 clients got a TCP reset: worker_connections was Debian's 768."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, min(hard, 4096)), hard))
    requests = []
    for n in range(1000):
        body = json.dumps(generate(list(PORTS)[n % 3])).encode()
        requests.append(
            b"POST /api/generate HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nConnection: close\r\n"
            b"Content-Length: %d\r\n\r\n%s" % (len(body), body)
        )

    async def everyone():
        return await asyncio.gather(*(one_client(r) for r in requests))

    answers = asyncio.run(everyone())
    counts = {}
    for status, _ in answers:
        counts[status] = counts.get(status, 0) + 1
    print(f"1000 at once: {counts}")
    assert set(counts) <= {200, 503}, counts
    assert all(retry == "2" for status, retry in answers if status == 503)
    assert counts.get(200, 0) >= 256  # one address's share of the slots and queue, all served


def test_the_gateway_host_serves_nothing_but_the_gateway(host):
    assert host.run(f"curl -s --max-time 5 http://{ADDRESS}:80/").rc == 7  # Debian's default site is off
    assert not host.file("/etc/nginx/sites-enabled/default").exists
    # the gateway's own main configuration, which nginx.service runs; Debian's stays the package's
    conf = host.check_output("cat /etc/nginx/ollama-gateway/nginx.conf")
    assert "worker_connections 3100;" in conf and "worker_rlimit_nofile 6200;" in conf  # 4 × (7 + 512) + 1024
    assert "-c /etc/nginx/ollama-gateway/nginx.conf" in host.check_output("systemctl show -p ExecStart nginx")
    assert host.run("dpkg --verify nginx-common 2>&1 | grep -q /etc/nginx/nginx.conf").rc != 0  # unmodified
