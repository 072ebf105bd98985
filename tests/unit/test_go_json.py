"""One table of request bodies (fixtures/go-json/cases.json), read three ways that must agree: by Go
(decoded.json, recorded from tests/go_json/decode.go: encoding/json into the fields of Ollama's request
struct), by the stand-in (go_body.py) and by the gateway's router (readRequest, under njs and Node.js). Where the
router cannot read a body as Go does, it refuses it: it never forwards one that Ollama reads otherwise."""

import json
import shutil
import subprocess
from pathlib import Path

import go_body
import pytest

FIXTURES = Path(__file__).resolve().parent / "fixtures" / "go-json"
CASES = json.loads((FIXTURES / "cases.json").read_text())
GO = {r["name"]: r for r in json.loads((FIXTURES / "decoded.json").read_text())}
ROUTER = Path(__file__).resolve().parents[2] / "roles" / "ollama_gateway" / "files" / "ollama_gateway.js"
FIELDS = {"model": "string", "options": "map[string]interface {}", "keep_alive": "*api.Duration"}


def test_every_case_has_gos_answer():
    assert [c["name"] for c in CASES] == list(GO)


@pytest.mark.parametrize("case", CASES, ids=[c["name"] for c in CASES])
def test_the_stand_in_reads_a_body_as_go_does(case):
    decoded, error = go_body.decode(case["body"].encode(), "request", FIELDS)
    go = GO[case["name"]]
    assert bool(error) == bool(go.get("error")), error
    if error:
        assert error == go["error"]
        return
    assert (decoded.get("model"), decoded.get("options")) == (go["model"], go["options"])
    assert decoded.get("keep_alive") == go.get("keep_alive")


PROGRAM = """const cases = %s;
const out = {};
cases.forEach(function (c) {
    const read = gw.readRequest(Buffer.from(c.body));
    if (read.error) { out[c.name] = { refused: read.status === 400 ? 'not one JSON value' : read.error }; return; }
    const models = Object.keys(read.request).filter(function (k) { return k.toLowerCase() === 'model'; });
    if (models.length > 1) { out[c.name] = { refused: 'the model named more than once' }; return; }
    // what the guard decides on (long strings left out) and, when it rewrites, what it forwards (read whole)
    const whole = read.cut ? gw.readWhole(Buffer.from(c.body)).request : read.request;
    const options = function (r) { return r.options === undefined ? null : r.options; };
    out[c.name] = { model: read.request[models[0]], options: options(whole),
                    option_names: Object.keys(options(read.request) || {}).sort().concat(Object.keys(options(whole) || {}).sort()) };
});
// a line each: njs's console.log breaks a longer one at 2048 bytes
Object.keys(out).forEach(function (name) { console.log(JSON.stringify([name, out[name]])); });
"""


@pytest.fixture(scope="module", params=["njs", "node"])
def router_reads(request, tmp_path_factory):
    """name → what the router forwards for each case: {"options": ..., "model": ...}, or {"refused": reason};
    under njs, the engine nginx runs it with (Debian's njs 0.7.9 CLI), and Node.js."""
    engine = shutil.which(request.param) or shutil.which("nodejs" if request.param == "node" else "njs")
    if engine is None:
        pytest.fail(f"{request.param} is missing: make test-packages installs it")
    work = tmp_path_factory.mktemp(request.param)
    (work / "ollama_gateway.js").write_text(ROUTER.read_text())
    (work / "router.mjs").write_text(ROUTER.read_text())
    program = PROGRAM % json.dumps(CASES)
    if request.param == "njs":
        (work / "cases.mjs").write_text("import gw from 'ollama_gateway.js';\n" + program)
        args = [engine, "-t", "module", "-p", str(work), str(work / "cases.mjs")]
    else:
        args = [
            engine,
            "--input-type=module",
            "-e",
            f"import gw from {json.dumps(str(work / 'router.mjs'))};\n" + program,
        ]
    done = subprocess.run(args, capture_output=True, text=True, check=True, cwd=work)
    return {**dict(json.loads(line) for line in done.stdout.splitlines()), "engine": request.param}


# Where the router refuses what Go would read (400 at the gateway, tested in molecule's test_hostile.py).
REFUSED = {
    "model, then Model: the last": "the model named more than once",
    "trailing data after the object is not read (gin decodes one value)": "not one JSON value",
}


# njs 0.7.9's JSON.parse stops at 32 levels ("Nested too deep"); Go's encoding/json at 10,000. Refused at the
# gateway, never misread: still a difference clients can meet (issue 23).
REFUSED_BY_NJS = {"nested 40 deep in a field Ollama takes as raw JSON": "not one JSON value"}


@pytest.mark.parametrize("case", CASES, ids=[c["name"] for c in CASES])
def test_the_router_reads_options_as_go_does_or_refuses(case, router_reads):
    seen, go = router_reads[case["name"]], GO[case["name"]]
    refused = {**REFUSED, **(REFUSED_BY_NJS if router_reads["engine"] == "njs" else {})}
    if case["name"] in refused:
        assert seen == {"refused": refused[case["name"]]}
    elif go.get("error"):
        assert "refused" not in seen  # forwarded: Ollama refuses it itself
    else:
        names = sorted(go["options"] or {})
        assert seen == {"model": go["model"], "options": go["options"], "option_names": names + names}
