"""One table of model-name spellings (tests/model_names.json) checked against every implementation of Ollama's
rule: the Python core that the filters and modules import, the gateway's njs router (under njs, as nginx runs it,
and Node.js) and the stand-in. A spelling added to the table is checked everywhere."""

import json
import urllib.error
from pathlib import Path

import pytest
import standin_store
from ansible_collections.ollama.fleet.plugins.module_utils import model_names
from helpers import router_js

TESTS = Path(__file__).resolve().parents[1]
CASES = json.loads((TESTS / "model_names.json").read_text())["names"]
SERVED = [c for c in CASES if "key" in c]
REFUSED = [c for c in CASES if "refused" in c]
# the words each refusal's message carries, so an operator learns why
REASONS = {"required": "required", "invalid": "is not a model name", "cloud": "cloud model", "conflicting": "not both"}


@pytest.mark.parametrize("case", SERVED, ids=lambda c: repr(c["name"]))
def test_the_core_names_a_model_as_ollama_does(case):
    parsed = model_names.parse(case["name"])
    assert (parsed.key, parsed.display) == (case["key"], case["display"])
    assert model_names.same(case["name"], case["display"])
    # what Ollama shows is a name Ollama reads back as the same model
    assert model_names.display(case["display"]) == case["display"]


@pytest.mark.parametrize("case", REFUSED, ids=lambda c: repr(c["name"]))
def test_the_core_refuses_what_ollama_refuses_and_says_why(case):
    with pytest.raises(model_names.InvalidModelName, match=REASONS[case["refused"]]):
        model_names.parse(case["name"])


def test_the_table_holds_every_kind_of_spelling():
    """The spellings the hostile suite sends and the stand-in reads: defaults written out, a scheme, :local,
    case, Go's whitespace, another registry, a digest, cloud models and each invalid part."""
    names = [c["name"] for c in CASES]
    for needle in ("library/", "registry.ollama.ai/", "https://", ":local", "-cloud", ":cloud", "@sha256", "\x85"):
        assert any(needle in n.lower() for n in names), needle
    assert {c["refused"] for c in REFUSED} == set(REASONS)
    assert any(c["display"] != c["display"].lower() for c in SERVED)


@pytest.fixture(params=router_js.ENGINES)
def router_keys(request, tmp_path):
    """canonical() of the router over every name in the table, under njs or Node.js."""
    names = json.dumps([c["name"] for c in CASES])
    program = f"{names}.forEach(function (n) {{ console.log(JSON.stringify(gw.canonical(n))); }});\n"
    return router_js.run(request.param, tmp_path, program, timeout=60)


def test_the_router_names_every_spelling_as_the_core_does(router_keys):
    assert router_keys == [c.get("key") for c in CASES]


@pytest.mark.parametrize("case", CASES, ids=lambda c: repr(c["name"]))
def test_the_standin_names_every_spelling_as_the_core_does(case):
    assert standin_store.valid_name(case["name"]) == ("key" in case)
    if "key" in case:
        assert standin_store.normalise(case["name"]) == case["display"]


def test_the_standin_keeps_the_first_spelling_and_finds_it_by_any_other(standin):
    """server/routes.go getExistingName: a store holds a model under the case of its first pull; every other
    spelling finds it, and pulling it again under one adds no second copy."""
    server = standin()
    server.pull("Qwen3:0.6B")
    server.pull("registry.ollama.ai/library/qwen3:0.6b")
    assert [m["name"] for m in server.get("/api/tags")["models"]] == ["Qwen3:0.6B"]
    for spelling in ("qwen3:0.6b", "library/QWEN3:0.6b", " qwen3:0.6b:local "):
        with server.post("/api/show", {"model": spelling}) as answer:
            assert answer.status == 200, spelling
    with pytest.raises(urllib.error.HTTPError) as refused:
        server.pull("qwen3:0.6b@sha256:0123")
    assert (refused.value.code, json.load(refused.value)) == (
        400,
        {"error": 'name "qwen3:0.6b@sha256:0123" is invalid'},
    )
