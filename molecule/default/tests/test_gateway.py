"""Through the gateway on the GPU host itself: balancing, routing, locked management, streaming."""

import json
import re
import socket

from helpers.fleet import recap, site
from helpers.ollama_client import burst, call

GATEWAY = "http://10.213.0.11:11434"
ADMIN = "olt-test-admin-key-0001"
PINNED = {"llama3.1:8b": 11435, "llama3.3:70b": 11436, "qwen3:0.6b": 11437}


def test_every_instance_is_in_the_upstream_and_up(host):
    conf = host.check_output("cat /etc/nginx/ollama-gateway/upstreams.conf")
    upstream = conf.split("upstream ollama_all {", 1)[1].split("}", 1)[0]
    primaries = re.findall(r"server 127\.0\.0\.1:(\d+) max_conns=(\d+)", upstream)
    assert primaries == [("11435", "4"), ("11436", "2"), ("11437", "1")]
    assert len(re.findall(r"server 127\.0\.0\.1:\d+ backup", upstream)) == 3
    health = json.loads(host.check_output("curl -s http://127.0.0.1:8081/healthz"))  # the status listener
    assert (health["up"], health["total"]) == (3, 3)
    # the public one says up or down and nothing about hosts or ports
    assert call(f"{GATEWAY}/healthz").json() == {"status": "up"}


def test_clients_may_reach_the_gateway_by_a_dns_name(host):
    # Ollama on 127.0.0.1 refuses a Host that is not local (server/routes.go allowedHostsMiddleware) ...
    direct = "curl -s -o /dev/null -w '%{http_code}' -H 'Host: ollama.example.com' http://127.0.0.1:11437/api/version"
    assert host.check_output(direct) == "403"
    # ... so the gateway must not pass its clients' Host on: by name, the same answers as by IP
    generate = {"model": "qwen3:0.6b", "prompt": "hi", "stream": False, "options": {"num_predict": 2}}
    for path, body in [("/api/version", None), ("/api/tags", None), ("/api/generate", generate), ("/", None)]:
        by_ip = call(f"{GATEWAY}{path}", body)
        by_name = call(f"{GATEWAY}{path}", body, headers={"Host": "ollama.example.com"})
        assert (by_name.status, by_ip.status) == (200, 200), path
        if path == "/api/generate":  # a generated text differs from call to call; who answered does not
            assert (
                by_name.headers["x-ollama-instance"] == by_ip.headers["x-ollama-instance"] == "olt-default-gpu1:11437"
            )
        else:
            assert by_name.body == by_ip.body, path


def test_a_pinned_model_is_answered_only_by_its_instance():
    for model, port in PINNED.items():
        for _ in range(4):
            answer = call(
                f"{GATEWAY}/api/generate",
                {"model": model, "prompt": "hi", "stream": False, "options": {"num_predict": 2}},
            )
            assert answer.status == 200
            assert answer.headers["x-ollama-instance"] == f"olt-default-gpu1:{port}"


def test_openai_route_follows_the_model_too():
    answer = call(
        f"{GATEWAY}/v1/chat/completions",
        {"model": "qwen3:0.6b", "max_tokens": 2, "messages": [{"role": "user", "content": "hi"}]},
    )
    assert answer.status == 200 and answer.headers["x-ollama-instance"] == "olt-default-gpu1:11437"


def test_management_is_refused_and_points_to_site_yml():
    """Through the gateway a pull or delete reached one host's store behind the plan's back; the plan (site.yml)
    is the only way models change, so no key opens these endpoints."""
    for key in (None, ADMIN):
        refused = call(f"{GATEWAY}/api/pull", {"model": "qwen3:0.6b", "stream": False}, key=key)
        assert refused.status == 403 and "site.yml" in refused.json()["error"]
        assert call(f"{GATEWAY}/api/delete", method="DELETE", body={"model": "x"}, key=key).status == 403


def raw_exchange(payload: bytes) -> bytes:
    """Send bytes as they are to the gateway; everything it answers until it goes quiet (2 s)."""
    with socket.create_connection(("10.213.0.11", 11434), timeout=10) as conn:
        conn.sendall(payload)
        conn.settimeout(2)
        answer = b""
        try:
            while chunk := conn.recv(65536):
                answer += chunk
        except TimeoutError:
            pass
    return answer


def test_a_body_sent_with_a_get_never_reaches_an_instance(host):
    # the body is a request of its own (an unauthenticated POST /api/copy): forwarded to an instance that did
    # not read it, it would run as the next request on that kept-alive connection. Ollama (Go) discards such
    # a body, as the stand-in does, logging it: the gateway must not send it at all.
    smuggled = json.dumps({"source": "qwen3:0.6b", "destination": "smuggled:1b"}).encode()
    inner = b"POST /api/copy HTTP/1.1\r\nHost: localhost\r\nContent-Length: %d\r\n\r\n%s" % (len(smuggled), smuggled)
    since = host.check_output("date +%s")
    try:
        for path in (b"/api/tags", b"/api/version", b"/api/ps", b"/v1/models", b"/"):
            answer = raw_exchange(
                b"GET %s HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n%s" % (path, len(inner), inner)
            )
            assert answer.startswith(b"HTTP/1.1 200 ") and answer.count(b"HTTP/1.1 ") == 1, path
        seen = host.check_output(
            f"journalctl --sync; journalctl -q --no-pager -u 'ollama@*' --since @{since} | grep -c 'unread request body' || true"
        )
        assert seen == "0"
        assert "smuggled:1b" not in {m["name"] for m in call(f"{GATEWAY}/api/tags").json()["models"]}
    finally:
        host.run('curl -s -X DELETE http://127.0.0.1:11435/api/delete -d \'{"model": "smuggled:1b"}\'')


def test_each_endpoint_takes_only_its_methods():
    for method, path, body in [
        ("POST", "/api/tags", {}),
        ("PUT", "/api/version", {}),
        ("DELETE", "/", None),
        ("GET", "/api/generate", None),
        ("GET", "/api/show", None),
        ("PUT", "/v1/chat/completions", {}),
    ]:
        answer = call(f"{GATEWAY}{path}", body, method=method)
        assert answer.status == 405 and "method not allowed" in answer.json()["error"], (method, path)
    # a browser's CORS preflight gets the instance's own answer (Ollama's OLLAMA_ORIGINS rules)
    for path in ("/api/chat", "/api/tags", "/api/show"):
        preflight = call(f"{GATEWAY}{path}", method="OPTIONS", headers={"Origin": "http://localhost"})
        assert preflight.status == 204 and preflight.headers["x-ollama-instance"].startswith("olt-default-gpu1:"), path


def test_the_gateways_own_errors_are_json_and_name_no_version():
    too_large = raw_exchange(
        b"POST /api/generate HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        b"Content-Length: 1073741824\r\n\r\n{}"
    )
    head, _, body = too_large.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 413 ")
    assert "request body too large" in json.loads(body)["error"]
    assert call(f"{GATEWAY}/api/version").headers["server"] == "nginx"
    # what nginx refuses before any location (issue 23: these came back as nginx's HTML pages)
    for status, request in (
        (400, b"GET /api/version HTTP/1.1\r\nHost: x\r\nnot a header line\r\n\r\n"),
        (400, b"GET /api/version HTTP/1.1\r\nHost: x\r\nX-Big: " + b"h" * 40000 + b"\r\n\r\n"),
        (405, b"TRACE /api/version HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"),
        (414, b"GET /" + b"u" * 20000 + b" HTTP/1.1\r\nHost: x\r\n\r\n"),
        (501, b"POST /api/generate HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip\r\n\r\n"),
    ):
        head, _, body = raw_exchange(request).partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 %d " % status) and b"application/json" in head, (status, head)
        assert json.loads(body)["error"] and b"nginx/" not in body, (status, body)


def test_unknown_paths_are_not_proxied():
    assert call(f"{GATEWAY}/api/anything").status == 404
    # the stand-in's debug paths (its topology, not Ollama's API) never reach a client, whatever it sends
    assert call(f"{GATEWAY}/standin/ps", headers={"Host": "localhost"}).status == 404
    assert call(f"{GATEWAY}/standin/stats", {"model": "x"}).status == 404
    assert call(f"{GATEWAY}/api/version").json() == {"version": "0.33.0"}


def test_streaming_arrives_token_by_token():
    answer = call(
        f"{GATEWAY}/api/chat",
        {"model": "qwen3:0.6b", "messages": [{"role": "user", "content": "hi"}], "options": {"num_predict": 20}},
    )
    assert answer.status == 200 and len(answer.chunk_times) == 21
    # 20 tokens at the stand-in's 50/s: spread over ~0.4 s, the first long before the last
    assert answer.chunk_times[-1] - answer.chunk_times[0] > 0.25
    assert answer.first_byte < answer.total / 2


def test_a_burst_beyond_every_slot_waits_instead_of_failing():
    # 7 slots in all, 1 for qwen3:0.6b: 12 at once queue on its instance and all succeed
    body = {"model": "qwen3:0.6b", "prompt": "burst", "stream": False, "options": {"num_predict": 5}}
    answers = burst(f"{GATEWAY}/api/generate", [body] * 12)
    assert [a.status for a in answers] == [200] * 12


def test_stub_status_only_on_the_host(host):
    assert "Active connections" in host.check_output("curl -sf http://127.0.0.1:8081/nginx_status")
    assert host.run("curl -sf http://10.213.0.11:8081/nginx_status").rc != 0


def test_nginx_config_is_ours_and_tested(host):
    conf = host.file("/etc/nginx/conf.d/ollama-gateway.conf")
    assert conf.content_string.startswith("#\n# Ansible managed")
    assert host.run("nginx -t -c /etc/nginx/ollama-gateway/nginx.conf").rc == 0
    keys = host.file("/etc/nginx/ollama-gateway/admin_keys.map")
    assert keys.mode == 0o600 and ADMIN in keys.content_string


def test_chat_answer_names_its_gpus(host):
    uuids = [g["uuid"] for g in json.loads(host.check_output("cat /etc/nvidia-sim/gpus.json"))["gpus"]]
    answer = call(
        f"{GATEWAY}/api/chat",
        {"model": "llama3.3:70b", "stream": False, "messages": [{"role": "user", "content": "hi"}]},
    )
    assert answer.headers["x-ollama-gpus"].split(",") == uuids[2:7]


def test_site_yml_with_an_instance_drained_changes_nothing(host):
    """The drain tool used to rewrite the nginx file the template owns, so every run with an instance drained
    reported a change (and put the instance back). Now site.yml writes fleet.json and the drain tool alone
    renders the upstreams from it and the marks: a rerun leaves the drained instance out and changes nothing."""
    host.check_output("/usr/local/sbin/ollama-gateway-drain olt-default-gpu1/solo on --reason manual")
    try:
        run = site()
        assert run.returncode == 0, run.stdout[-3000:]
        assert recap(run)["olt-default-gpu1"]["changed"] == 0, run.stdout[-3000:]
        solo = [
            line
            for line in host.check_output("cat /etc/nginx/ollama-gateway/upstreams.conf").splitlines()
            if "127.0.0.1:11437" in line
        ]
        assert solo and all(line.rstrip().split(";")[0].endswith(" down") for line in solo)
    finally:
        host.check_output("/usr/local/sbin/ollama-gateway-drain olt-default-gpu1/solo off --reason manual")
