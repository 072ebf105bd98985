"""What one request body may cost the gateway's router (docs/gateway.md, "What a request costs the gateway"): the router
reads a body's structure, long strings left out, and refuses one whose structure is beyond its limits (413),
under njs (Debian's njs 0.7.9, as nginx runs it) and Node.js. route() runs whole here, with nginx's request
object stood in for: what it refuses, where it sends a body and what it forwards. The memory and time these
bounds hold to are measured in nginx by molecule/default/tests/test_hostile.py."""

import json

import pytest
from helpers import router_js

MiB = 2**20
PINNED = "llama3.1:8b"
FLEET = {
    "routes": {PINNED: "ollama_pinned"},
    "contexts": {PINNED: 8192},
    "unpinned": "reject",
    "context_policy": "clamp",
}

# route() on a body file, with a request object as nginx's njs module gives it
PROGRAM = """function route(uri, file) {
    const seen = {};
    const r = {
        uri: uri, args: {}, headersIn: {}, headersOut: {},
        variables: { ollama_gateway_fleet: %(fleet)s, request_body_file: file, ollama_gateway_admin: '0' },
        return: function (status, text) { seen.status = status; seen.text = text; },
        internalRedirect: function (location) { seen.location = location; },
    };
    gw.route(r);
    const forwarded = r.variables.ollama_gateway_body;
    const sent = forwarded === undefined ? null : JSON.parse(forwarded);
    return {
        status: seen.status || null,
        error: seen.text ? JSON.parse(seen.text).error : null,
        upstream: seen.location ? r.variables.ollama_gateway_upstream : null,
        guarded: r.variables.ollama_gateway_guarded || null,
        forwarded: sent && { keys: Object.keys(sent).sort(), prompt: (sent.prompt || '').length, options: sent.options || null },
    };
}
%(calls)s
"""


@pytest.fixture(params=router_js.ENGINES)
def route(request, tmp_path):
    """route(uri, {name: body bytes}) → {name: what route() did}, under njs or Node.js."""
    (tmp_path / "fleet.json").write_text(json.dumps(FLEET))

    def run(uri: str, bodies: dict[str, bytes]) -> dict:
        calls = []
        for n, (name, body) in enumerate(bodies.items()):
            (tmp_path / f"body{n}").write_bytes(body)
            file = json.dumps(str(tmp_path / f"body{n}"))
            calls.append(f"console.log(JSON.stringify([{json.dumps(name)}, route({json.dumps(uri)}, {file})]));")
        program = PROGRAM % {"fleet": json.dumps(str(tmp_path / "fleet.json")), "calls": "\n".join(calls)}
        return dict(router_js.run(request.param, tmp_path, program))

    return run


def generate(**fields) -> bytes:
    return json.dumps({"model": PINNED, **fields}).encode()


def many(count: int, item: str) -> str:
    return ",".join(item % n for n in range(count))


def test_long_strings_cost_nothing_and_reach_the_instance_as_sent(route):
    image = "QUJD" * (10 * MiB // 4)
    seen = route(
        "/api/generate",
        {
            "an image of 10 MiB": generate(prompt="?", images=[image]),
            "a prompt of 15 MiB": generate(prompt="word, " * (15 * MiB // 6)),
            "a model name of 90 characters": json.dumps(
                {"model": "hf.co/org/" + "m" * 80, "prompt": "x" * 100}
            ).encode(),
        },
    )
    for name in ("an image of 10 MiB", "a prompt of 15 MiB"):
        assert seen[name] == {
            "status": None,
            "error": None,
            "upstream": "ollama_pinned",
            "guarded": None,
            "forwarded": None,
        }
    # read whole, not left out: unpinned, so refused by its name
    assert seen["a model name of 90 characters"]["status"] == 404
    assert "hf.co/org/" + "m" * 80 in seen["a model name of 90 characters"]["error"]


def test_a_guarded_body_is_rewritten_from_what_the_client_sent(route):
    """Long strings are left out of what the router reads, never out of what it forwards."""
    seen = route(
        "/api/chat",
        {
            "keep_alive and num_ctx with a 500 KB prompt": generate(
                prompt="p" * 500_000, keep_alive=0, options={"num_ctx": 131072, "stop": ["s" * 100]}
            ),
            "keep_alive with a 2 MB prompt": generate(prompt="p" * 2_000_000, keep_alive=0),
        },
    )
    small = seen["keep_alive and num_ctx with a 500 KB prompt"]
    assert small["guarded"] == "keep_alive, options.num_ctx" and small["upstream"] == "ollama_pinned"
    assert small["forwarded"] == {
        "keys": ["model", "options", "prompt"],
        "prompt": 500_000,
        "options": {"stop": ["s" * 100]},
    }
    large = seen["keep_alive with a 2 MB prompt"]
    assert large["status"] == 400 and "leave them out" in large["error"] and large["upstream"] is None


STRUCTURE = {
    # name → (body, whether the router reads it)
    "a context of 128k numbers": (generate(context=list(range(131072))), True),
    "2048 short inputs to embed": (generate(input=[f"a short sentence {n}" for n in range(2048)]), True),
    "a chat with 830 KB of JSON in it (33,000 escaped quotes)": (
        generate(messages=[{"role": "user", "content": json.dumps([{"id": n, "ok": True} for n in range(16500)])}]),
        True,
    ),
    "16 MiB of 66-byte strings (each left out)": (
        (f'{{"model":"{PINNED}","x":[' + ",".join(['"' + "s" * 66 + '"'] * (16 * MiB // 69)) + "]}").encode(),
        True,
    ),
    "300,000 empty strings": ((f'{{"model":"{PINNED}","x":[' + ",".join(['""'] * 300_000) + "]}").encode(), True),
    "1 MiB of small keys": ((f'{{"model":"{PINNED}",' + many(MiB // 8, '"%x":0') + "}").encode(), False),
    "16 MiB of small keys": ((f'{{"model":"{PINNED}",' + many(16 * MiB // 9, '"k%x":0') + "}").encode(), False),
    "16 MiB of empty objects": (
        (f'{{"model":"{PINNED}","x":[' + ",".join(["{}"] * (16 * MiB // 3)) + "]}").encode(),
        False,
    ),
    "70,000 empty arrays (0.2 MB)": (
        (f'{{"model":"{PINNED}","x":[' + ",".join(["[]"] * 70_000) + "]}").encode(),
        False,
    ),
    "16 MiB of numbers": ((f'{{"model":"{PINNED}","x":[' + ",".join(["0"] * (8 * MiB)) + "]}").encode(), False),
    "700,000 empty strings": ((f'{{"model":"{PINNED}","x":[' + ",".join(['""'] * 700_000) + "]}").encode(), False),
    "600,000 escaped quotes in a prompt": (generate(prompt='"' * 600_000), False),
    "16 MiB of backslashes in a prompt": (generate(prompt="\\" * (8 * MiB)), False),
    "16 MiB of white space after a key": (b'{"model":"%s","x"' % PINNED.encode() + b" " * (16 * MiB) + b":1}", False),
}


def test_a_body_beyond_the_routers_bounds_is_refused_with_413(route):
    seen = route("/api/generate", {name: body for name, (body, _) in STRUCTURE.items()})
    for name, (_, read) in STRUCTURE.items():
        if read:
            assert seen[name]["upstream"] == "ollama_pinned", name
        else:
            assert seen[name]["status"] == 413 and "more JSON than the gateway reads" in seen[name]["error"], name


def test_what_go_would_refuse_is_refused_or_left_to_ollama(route):
    seen = route(
        "/api/generate",
        {
            "a string not ended": b'{"model":"%s","prompt":"' % PINNED.encode() + b"x" * 100,
            "a key not ended": b'{"model":"%s","prom' % PINNED.encode(),
            "nothing": b"",
            "the model after a long string, twice": generate(prompt="x" * 100)[:-1] + b', "Model": "qwen3:0.6b"}',
        },
    )
    assert seen["a string not ended"]["status"] == 400 and seen["a key not ended"]["status"] == 400
    assert seen["nothing"] == {**seen["nothing"], "status": 400, "error": "missing request body"}
    assert seen["the model after a long string, twice"]["status"] == 400
    assert "more than once" in seen["the model after a long string, twice"]["error"]
