"""What each request cost: the router's body filter reads the counts at an answer's end (ollama_gateway.js
measure, under Node.js), and Debian's mtail turns the request log nginx writes into Prometheus metrics. The log
format and the mtail program are rendered by Ansible from the role's one list of fields, as site.yml renders
them; molecule/multihost runs both behind real gateways."""

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from test_gateway_router import run_router

REPO = Path(__file__).resolve().parents[2]
ROLE = REPO / "roles" / "ollama_gateway"


def render(template: str, dest: Path, tmp_path: Path, **more) -> str:
    """TEMPLATE of the role, rendered by Ansible with the role's defaults and vars, one instance and MORE."""
    extra = {
        **more,
        "_ollama_gateway_backends": [
            {"host": "gpu1", "instance": "a", "address": "10.0.0.11", "port": 11435, "max_conns": 2, "models": []}
        ],
        "__ollama_gateway_dir": str(tmp_path),
        "_ollama_gateway_tls": False,
        "inventory_hostname": "gw",
    }
    (tmp_path / "extra.json").write_text(json.dumps(extra))
    ansible = str(Path(sys.executable).parent / "ansible")
    done = subprocess.run(
        [ansible, "localhost", "-c", "local", "-m", "template", "-a", f"src={ROLE}/templates/{template} dest={dest}",
         "-e", f"@{ROLE}/defaults/main.yml", "-e", f"@{ROLE}/vars/main/gateway.yml", "-e", f"@{tmp_path}/extra.json"],
        capture_output=True, text=True, env={**os.environ, "ANSIBLE_CONFIG": str(REPO / "ansible.cfg")},
    )  # fmt: skip
    assert done.returncode == 0, done.stdout[-2000:]
    return dest.read_text()


@pytest.fixture(scope="module")
def rendered(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("request_metrics")
    (tmp / "progs").mkdir()
    conf = render("ollama-gateway.conf.j2", tmp / "gateway.conf", tmp)
    render("ollama-gateway.mtail.j2", tmp / "progs" / "ollama-gateway.mtail", tmp)
    return {
        "log_format": re.search(r"log_format ollama_gateway_requests escape=json '(.*)';", conf)[1],
        "dir": tmp,
        "conf": conf,
    }


def test_counting_tokens_is_the_operators_choice(rendered, tmp_path):
    """The body filter, in the four routed locations by default (least_conn and the conversation's instance,
    each with the client's body or the guarded one); without it (or without the log) none, and nothing else of
    the routed locations changes."""
    assert rendered["conf"].count("js_body_filter ollama_gateway.measure buffer_type=buffer;") == 4
    for off in ({"ollama_gateway_count_tokens": False}, {"ollama_gateway_access_log": "off"}):
        conf = render("ollama-gateway.conf.j2", tmp_path / "off.conf", tmp_path, **off)
        assert "js_body_filter" not in conf and "None" not in conf
        assert conf.count("location @ollama_routed") == conf.count("location @ollama_affine") == 2


def log_line(log_format: str, **values) -> str:
    """A line as nginx writes it with escape=json: VALUES by the variable's name without $, "" for the rest
    ("-" for numbers nginx always has)."""

    def value(m):
        v = values.get(m[1].removeprefix("ollama_gateway_"), values.get(m[1], None))
        return json.dumps(str(v if v is not None else ""))[1:-1]

    return re.sub(r"\$([a-z_]+)", value, log_format)


def mtail_once(progs: Path, log: Path) -> dict:
    """Every sample mtail exports after reading LOG once: {(name, frozenset(labels)): value}."""
    if shutil.which("mtail") is None:
        pytest.fail("mtail is missing: make test-packages installs it")
    done = subprocess.run(
        ["mtail", "--progs", str(progs), "--logs", str(log), "--one_shot", "--one_shot_format=prometheus",
         "--emit_prog_label=false", "--port", "0"],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    samples = {}
    for name, labels, value in re.findall(r"^([a-z_]+)(?:\{(.*)\})? (\S+)$", done.stdout, re.M):
        samples[name, frozenset(re.findall(r'([a-z_]+)="((?:[^"\\]|\\.)*)"', labels))] = float(value)
    return samples


def total(samples: dict, name: str, **labels) -> float:
    want = set(labels.items())
    return sum(v for (n, ls), v in samples.items() if n == name and want <= set(ls))


def test_the_program_reads_every_line_the_log_format_writes(rendered, tmp_path):
    """Two keys, a stream and an answer that is not one, a refused request, and a client's path made of
    quotes and a field of its own: each counted once, under the labels the gateway gave it, and nothing
    from what the client wrote."""
    fmt = rendered["log_format"]
    common = {"time_iso8601": "2026-12-04T10:00:00+00:00", "remote_addr": "10.0.0.5", "request_method": "POST",
              "request_length": 300, "bytes_sent": 900, "answered_host": "gpu1", "answered_instance": "a",
              "upstream_addr": "10.0.0.11:11435", "status": 200}  # fmt: skip
    lines = [
        log_line(fmt, **common, key="team-a", uri="/api/chat", endpoint="/api/chat", model="qwen3:0.6b",
                 metric_model="qwen3:0.6b", upstream_header_time="0.250", ttft="0.250", request_time="1.300",
                 slot_wait="0.100", prompt_tokens=8, completion_tokens=24),
        log_line(fmt, **common, key="team-b", uri="/v1/chat/completions", endpoint="/v1/chat/completions",
                 model="qwen3:0.6b", metric_model="qwen3:0.6b", upstream_header_time="0.800", request_time="0.810",
                 prompt_tokens=8, completion_tokens=5),
        log_line(fmt, **{**common, "status": 404, "answered_host": "", "answered_instance": "", "upstream_addr": ""},
                 key="team-b", uri='/api/x","key":"evil","endpoint":"/api/chat', endpoint="other",
                 model='made-up"', request_time="0.000"),
    ]  # fmt: skip
    log = tmp_path / "requests.log"
    log.write_text("\n".join(lines) + "\n")
    for line in lines:
        json.loads(line)  # every line is JSON, whatever the client sent
    samples = mtail_once(rendered["dir"] / "progs", log)

    assert total(samples, "ollama_gateway_requests_total") == 3
    assert total(samples, "ollama_gateway_requests_total", key="team-b", endpoint="other", status="404", model="") == 1
    assert total(samples, "ollama_prompt_eval_total", key="team-a", model="qwen3:0.6b", host="gpu1") == 8
    assert (
        total(samples, "ollama_eval_total", key="team-a") == 24
        and total(samples, "ollama_eval_total", key="team-b") == 5
    )
    assert total(samples, "ollama_gateway_time_to_first_token_seconds_count", model="qwen3:0.6b") == 1  # the stream
    assert total(samples, "ollama_gateway_time_to_first_token_seconds_sum") == 0.25
    assert total(samples, "ollama_gateway_slot_wait_seconds_count") == 1
    assert total(samples, "ollama_gateway_request_duration_seconds_count") == 3
    values = {v for _, labels in samples for _, v in labels}
    assert not any("evil" in v or "made-up" in v for v in values)


def measured(tmp_path, status: int, pieces: list[str]) -> dict:
    """The variables measure() sets when an answer arrives in PIECES."""
    script = (
        f"const r = {{status: {status}, variables: {{}}, sent: [], sendBuffer(d, f) {{ this.sent.push(d.toString()); }}}};\n"
        f"const pieces = {json.dumps(pieces)};\n"
        "pieces.forEach(function (p, n) { gw.measure(r, Buffer.from(p), {last: n === pieces.length - 1}); });\n"
        "console.log(JSON.stringify({vars: r.variables, sent: r.sent.join('')}));"
    )
    return run_router(tmp_path, script)


NATIVE_END = (
    '{"model":"qwen3:0.6b","message":{"role":"assistant","content":""},"done":true,"total_duration":900000000,'
    '"load_duration":100000000,"prompt_eval_count":12,"prompt_eval_duration":200000000,"eval_count":30,'
    '"eval_duration":500000000}\n'
)


def test_the_counts_are_read_at_the_end_wherever_the_buffers_split_them(tmp_path):
    """Ollama's final chunk, split at every few bytes: prompt and generated tokens, and the slot wait that its
    durations leave (0.9 - 0.1 - 0.2 - 0.5 s); the answer passes on unchanged."""
    tokens = ['{"message":{"content":"say \\"eval_count\\":999"},"done":false}\n'] * 3
    for cut in range(1, len(NATIVE_END), 37):
        seen = measured(tmp_path, 200, tokens + [NATIVE_END[:cut], NATIVE_END[cut:]])
        assert seen["vars"] == {
            "ollama_gateway_prompt_tokens": "12", "ollama_gateway_completion_tokens": "30",
            "ollama_gateway_slot_wait": "0.100",
        }, cut  # fmt: skip
        assert seen["sent"] == "".join(tokens) + NATIVE_END


def test_openai_usage_counts_and_nothing_is_read_from_an_error_or_an_answer_without_counts(tmp_path):
    stream = [
        'data: {"choices":[{"text":"a"}],"usage":{"prompt_tokens":0,"completion_tokens":0,"total_tokens":0}}\n\n',
        'data: {"choices":[],"usage":{"prompt_tokens":8,"completion_tokens":6,"total_tokens":14}}\n\n',
        "data: [DONE]\n\n",
    ]
    assert measured(tmp_path, 200, stream)["vars"] == {
        "ollama_gateway_prompt_tokens": "8", "ollama_gateway_completion_tokens": "6"
    }  # fmt: skip
    assert (
        measured(tmp_path, 200, ['data: {"choices":[{"delta":{"content":"a"}}]}\n\n', "data: [DONE]\n\n"])["vars"] == {}
    )
    assert measured(tmp_path, 500, ['{"error":"x","eval_count":5}'])["vars"] == {}
    # /v1/messages: the stream's message_delta (anthropic/anthropic.go), as the stand-in sends it
    anthropic = [
        'event: message_start\ndata: {"message":{"usage":{"input_tokens":8,"output_tokens":0}}}\n\n',
        'event: message_delta\ndata: {"delta":{"stop_reason":"end_turn"},"usage":{"input_tokens":8,"output_tokens":7}}\n\n',
        'event: message_stop\ndata: {"type":"message_stop"}\n\n',
    ]
    assert measured(tmp_path, 200, anthropic)["vars"] == {
        "ollama_gateway_prompt_tokens": "8", "ollama_gateway_completion_tokens": "7"
    }  # fmt: skip
