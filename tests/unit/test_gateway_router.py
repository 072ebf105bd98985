"""The gateway's router (roles/ollama_gateway/files/ollama_gateway.js, njs) outside nginx: Node.js runs its
pure parts, name normalisation and the plan guard, on the cases Ollama v0.33 decides (types/model/name.go,
server/sched.go needsReload, encoding/json's key folding)."""

import json
import shutil
import subprocess
from pathlib import Path

import pytest

ROUTER = Path(__file__).resolve().parents[2] / "roles" / "ollama_gateway" / "files" / "ollama_gateway.js"


def run_router(tmp_path, script: str):
    """Run SCRIPT (JavaScript with `gw`, the router's exports) and return what it printed as JSON."""
    node = shutil.which("node") or shutil.which("nodejs")
    if node is None:
        pytest.fail("Node.js is missing: make test-packages installs it")
    module = tmp_path / "router.mjs"
    module.write_text(ROUTER.read_text())
    program = f"import gw from {json.dumps(str(module))};\n{script}"
    done = subprocess.run([node, "--input-type=module", "-e", program], capture_output=True, text=True, check=True)
    return json.loads(done.stdout)


@pytest.mark.parametrize(
    "name, full",
    [
        ("llama3.3:70b", "registry.ollama.ai/library/llama3.3:70b"),
        ("library/llama3.3:70b", "registry.ollama.ai/library/llama3.3:70b"),
        ("registry.ollama.ai/library/llama3.3:70b", "registry.ollama.ai/library/llama3.3:70b"),
        ("https://registry.ollama.ai/library/llama3.3:70b", "registry.ollama.ai/library/llama3.3:70b"),
        ("LLAMA3.3:70B", "registry.ollama.ai/library/llama3.3:70b"),
        (" qwen3:0.6b:local ", "registry.ollama.ai/library/qwen3:0.6b"),
        ("qwen3", "registry.ollama.ai/library/qwen3:latest"),
        ("ollama.com/library/x", "ollama.com/library/x:latest"),  # another registry: another model
        ("llama3.3:70b@sha256:0123", None),  # v0.33 parses no digest: "invalid model name"
        ("a/b/c/d", None),
        ("llama3.3:70b-cloud", None),  # Ollama sends cloud models to ollama.com (modelref)
        ("gpt-oss:CLOUD", None),
        ("my.ns/x", None),  # no "." in a namespace
        ("", None),
    ],
)
def test_names_resolve_as_ollama_resolves_them(tmp_path, name, full):
    assert run_router(tmp_path, f"console.log(JSON.stringify(gw.canonical({json.dumps(name)})));") == full


def guard(tmp_path, request: dict, context: int, policy: str):
    script = (
        f"const request = {json.dumps(request)};\n"
        f"const notes = gw.guard(request, {{model: 'm:1b', context: {context}}}, {json.dumps(policy)});\n"
        "console.log(JSON.stringify({notes: notes, request: request}));"
    )
    return run_router(tmp_path, script)


def test_the_guard_drops_what_would_unload_or_reload_a_pinned_model(tmp_path):
    request = {
        "model": "m:1b",
        "keep_alive": 0,
        "\u212aeep_alive": "5m",  # Go folds the Kelvin sign to k
        "options": {"num_ctx": 131072, "num_gpu": 0, "temperature": 0.2, "draft_num_predict": 3},
    }
    seen = guard(tmp_path, request, 8192, "clamp")
    assert seen["request"] == {"model": "m:1b", "options": {"temperature": 0.2}}
    assert sorted(seen["notes"]) == [
        "keep_alive",
        "keep_alive",
        "options.draft_num_predict",
        "options.num_ctx",
        "options.num_gpu",
    ]


def test_any_num_ctx_and_shift_go(tmp_path):
    # instances of one model may plan different contexts: even the smallest planned one would reload another
    seen = guard(tmp_path, {"shift": False, "options": {"num_ctx": 8192}}, 8192, "clamp")
    assert seen == {"notes": ["shift", "options.num_ctx"], "request": {"options": {}}}


def test_reject_policy_refuses_a_longer_context_and_names_the_plan(tmp_path):
    seen = guard(tmp_path, {"options": {"num_ctx": 131072}}, 8192, "reject")
    assert "131072" in seen["notes"] and "at most 8192" in seen["notes"]
    # shorter than planned would reload too: dropped, not refused
    assert guard(tmp_path, {"options": {"num_ctx": 512}}, 8192, "reject")["notes"] == ["options.num_ctx"]


def test_options_given_twice_are_refused(tmp_path):
    seen = guard(tmp_path, {"options": {}, "Options": {"num_ctx": 1}}, 8192, "clamp")
    assert "more than once" in seen["notes"]


def test_a_forms_model_is_its_first_model_field_wherever_the_file_stands(tmp_path):
    """/v1/audio/transcriptions (middleware/openai.go): Go's FormValue("model") is the first field so named; a
    file whose filename is "model" is no such field."""
    part = "--b0\r\nContent-Disposition: form-data; name={}\r\n\r\n{}\r\n"
    bodies = {
        "model after the file": part.format('"file"; filename="model"', "RIFF\0\1")
        + part.format('"model"', "qwen3:0.6b")
        + part.format('"model"', "llama3.3:70b")
        + "--b0--\r\n",
        "unquoted name": part.format("model", "llama3.1:8b") + "--b0--\r\n",
        "no model field": part.format('"file"; filename="model"', "RIFF") + "--b0--\r\n",
    }
    for name, body in bodies.items():
        (tmp_path / name).write_bytes(body.encode())
    script = (
        "const out = {};\n"
        + "".join(
            f"out[{json.dumps(name)}] = gw.formField({{ headersIn: {{ 'Content-Type': 'multipart/form-data; boundary=b0' }},"
            f" variables: {{ request_body_file: {json.dumps(str(tmp_path / name))} }} }}, 'model');\n"
            for name in bodies
        )
        + "console.log(JSON.stringify(out));"
    )
    assert run_router(tmp_path, script) == {
        "model after the file": "qwen3:0.6b",
        "unquoted name": "llama3.1:8b",
        "no model field": None,
    }


def affinities(tmp_path, cases):
    """For each (uri, body, headers, affine): the affine upstream the router sends the request through and the
    conversation's key ('' for none: balanced over free slots), or None for a model without one."""
    script = (
        f"const cases = {json.dumps(cases)};\n"
        "console.log(JSON.stringify(cases.map(function (c) {\n"
        "    const body = Buffer.from(typeof c[1] === 'string' ? c[1] : JSON.stringify(c[1]));\n"
        "    const read = gw.readRequest(body);\n"
        "    const pinned = {model: 'm', upstream: 'up', affine: c[3]};\n"
        "    return gw.affinity({uri: c[0], headersIn: c[2]}, pinned, read.request, read, body);\n"
        "})));"
    )
    return run_router(tmp_path, script)


SYSTEM = {"role": "system", "content": "You answer in the voice of a ship's engineer. " * 8}  # a long string: cut


def conversation(first: str, turns: int) -> list[dict]:
    messages = [SYSTEM, {"role": "user", "content": first}]
    for n in range(turns):
        messages += [{"role": "assistant", "content": f"answer {n} " * 20}, {"role": "user", "content": f"next {n}"}]
    return messages


def test_the_turns_of_a_conversation_share_a_key_on_every_endpoint_and_others_do_not(tmp_path):
    long_first = "Tell me about the warp core, in detail please. " * 4
    chat = [("/api/chat", {"model": "m", "messages": conversation(first, n)}, {}, "aff") for first in ("hi", long_first) for n in range(3)]  # fmt: skip
    openai = [
        (
            "/v1/chat/completions",
            {"model": "m", "messages": [{"role": "user", "content": [{"type": "text", "text": "hi"}]}]},
            {},
            "aff",
        ),  # fmt: skip
        (
            "/v1/chat/completions",
            {
                "model": "m",
                "messages": [
                    {"role": "user", "content": [{"type": "text", "text": "hi"}]},
                    {"role": "assistant", "content": "x"},
                ],
            },
            {},
            "aff",
        ),  # fmt: skip
        (
            "/v1/chat/completions",
            {"model": "m", "messages": [{"role": "user", "content": "a"}], "prompt_cache_key": "conv-7"},
            {},
            "aff",
        ),  # fmt: skip
        (
            "/v1/completions",
            {"model": "m", "messages": [{"role": "user", "content": "b"}], "prompt_cache_key": "conv-7"},
            {},
            "aff",
        ),  # fmt: skip
    ]
    story = "Once upon a time, " * 20  # longer than the prompt's first 256 bytes the key reads
    generate = [
        ("/api/generate", {"model": "m", "prompt": story + "and then"}, {}, "aff"),
        ("/api/generate", {"model": "m", "prompt": story + "and then, later"}, {}, "aff"),
        ("/api/generate", {"model": "m", "prompt": story, "system": "terse"}, {}, "aff"),
        ("/api/generate", {"model": "m", "prompt": "go on", "context": list(range(100))}, {}, "aff"),
        ("/api/generate", {"model": "m", "prompt": "more", "context": list(range(64)) + [7] * 50}, {}, "aff"),
        ("/v1/completions", {"model": "m", "prompt": [story + "x", "y"]}, {}, "aff"),
        ("/v1/completions", {"model": "m", "prompt": story + "z"}, {}, "aff"),
    ]
    seen = affinities(tmp_path, chat + openai + generate)
    keys = [s["key"] for s in seen]
    assert {s["upstream"] for s in seen} == {"aff"} and all(len(k) == 40 for k in keys)
    assert keys[0] == keys[1] == keys[2] != keys[3] == keys[4] == keys[5]  # turns alike; another first question
    assert keys[6] == keys[7] and keys[8] == keys[9] != keys[6]  # OpenAI's parts; its prompt_cache_key wins
    assert keys[10] == keys[11] != keys[12]  # the prompt's start, and its system prompt
    assert keys[13] == keys[14] != keys[10]  # the context's first tokens
    assert keys[15] == keys[16] == affinities(tmp_path, [("/v1/completions", {"model": "m", "prompt": story}, {}, "a")])[0]["key"]  # fmt: skip


def test_other_requests_of_the_model_go_through_its_affine_upstream_without_a_key(tmp_path):
    """Every request of a model pinned on several instances goes through the one upstream that counts their slots:
    without a key (other endpoints, turned off, nothing to go by) nginx balances it over the free slots."""
    chat = {"model": "m", "messages": [{"role": "user", "content": "hi"}]}
    seen = affinities(
        tmp_path,
        [
            ("/api/chat", chat, {}, None),  # the model is on one instance, or excluded (fleet.json)
            ("/api/embed", {"model": "m", "input": "hi"}, {}, "aff"),
            ("/v1/messages", chat, {}, "aff"),
            ("/api/chat", chat, {"X-Ollama-Affinity": "OFF"}, "aff"),
            ("/api/generate", {"model": "m"}, {}, "aff"),  # a load: no prompt
            ("/api/chat", {"model": "m", "messages": [], "prompt_cache_key": "x"}, {}, "aff"),  # not on Ollama's API
            ("/api/chat", chat, {"X-Ollama-Affinity": "on"}, "aff"),
        ],
    )
    assert seen[0] is None
    assert seen[1:6] == [{"upstream": "aff", "key": ""}] * 5 and len(seen[6]["key"]) == 40


def test_a_body_the_key_cannot_read_is_balanced_never_refused_and_costs_a_bounded_read(tmp_path):
    """A review's attacks: objects where strings belong (String() of {toString: 1} throws in njs), a key under
    more long strings than the router marks (two conversations would share one key), and many copies of a mark
    (each re-read 64 KiB: seconds of a worker)."""
    tools = [{"description": "a tool that does something useful, described at length. " * 2} for _ in range(70)]
    conversation = [{"role": "system", "content": "be brief " * 20}, {"role": "user", "content": "x " * 40}]
    seen = affinities(
        tmp_path,
        [
            ("/api/chat", {"model": "m", "messages": [{"role": {"toString": 1}, "content": "hi"}]}, {}, "aff"),
            ("/api/generate", {"model": "m", "prompt": "x", "context": [{"toString": 1}, 2]}, {}, "aff"),
            ("/api/chat", {"model": "m", "tools": tools, "messages": conversation}, {}, "aff"),
        ],
    )
    assert len(seen[0]["key"]) == len(seen[1]["key"]) == 40  # read as what they are not: no exception
    assert seen[2] == {"upstream": "aff", "key": ""}  # its messages' strings were left out unmarked
    # 20,000 copies of mark 0 after a 64 KiB string: the mark read once, its copies as text (each would have read
    # the 64 KiB again, 1.3 GB, past the key's 1 MiB: no key)
    script = (
        'const text = \'{"model":"m","pad":"\' + \'y\'.repeat(65536) + \'","messages":[\'\n'
        '    + new Array(20000).fill(\'{"role":"s","content":"\\ue0000"}\').join(\',\') + \']}\';\n'
        "const body = Buffer.from(text);\n"
        "const read = gw.readRequest(body);\n"
        "const seen = gw.affinity({uri: '/api/chat', headersIn: {}}, {affine: 'aff'}, read.request, read, body);\n"
        "console.log(JSON.stringify(seen.key.length));"
    )
    assert run_router(tmp_path, script) == 40


def test_more_long_strings_than_the_key_reads_back_parse_and_a_clients_mark_is_only_text(tmp_path):
    """The first 64 long strings are marked for the key (U+E000 and a number), the rest read as "" (the router
    never forwards either: a body it rewrites is read whole again); a mark a client writes itself stays its text."""
    many = {"model": "m", "messages": [{"role": "user", "content": f"{n} " + "x" * 80} for n in range(70)]}
    forged = {"model": "m", "messages": [{"role": "user", "content": "\ue0000"}]}
    script = (
        f"const bodies = {json.dumps([many, forged])};\n"
        "console.log(JSON.stringify(bodies.map(function (b) {\n"
        "    const read = gw.readRequest(Buffer.from(JSON.stringify(b)));\n"
        "    const m = read.request.messages;\n"
        "    return [m.length, m[0].content, m[69 % m.length].content, read.marks.length, read.unmarked];\n"
        "})));"
    )
    assert run_router(tmp_path, script) == [[70, "\ue0000", "", 128, True], [1, "\ue0000", "\ue0000", 0, False]]
