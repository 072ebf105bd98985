"""ansible-doc shows every module's and every filter's own documentation (issue 29).

A filter file holds several filters and ansible-doc reads one DOCUMENTATION per file, so each filter is documented
by its sidecar, plugins/filter/NAME.yml, and the .py files document none (one place per filter's documentation).
The options a sidecar documents are the filter function's parameters, with the same defaults: documentation that
drifts from the code fails here."""

import importlib.util
import inspect
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
FILTERS = REPO / "plugins/filter"
# What a generated stub says instead of documenting: such text fails the test.
PLACEHOLDER = re.compile(r"^(C\(\w+\)\.?|The value the filter is applied to\.?|\w+)$")


def ansible_doc(kind, names):
    run = subprocess.run(
        [str(Path(sys.executable).parent / "ansible-doc"), "-t", kind, "--json", *[f"ollama.fleet.{n}" for n in names]],
        capture_output=True, text=True, cwd=REPO, timeout=120, check=True,
        env={**os.environ, "ANSIBLE_CONFIG": str(REPO / "ansible.cfg")},
    )  # fmt: skip
    return json.loads(run.stdout)


def filter_functions():
    """Every filter the collection's filter files register, by name: its function."""
    functions = {}
    for path in sorted(FILTERS.glob("*.py")):
        spec = importlib.util.spec_from_file_location(f"ollama_fleet_docs_{path.stem}", path)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        functions.update(module.FilterModule().filters())
    return functions


FUNCTIONS = filter_functions()


@pytest.fixture(scope="module")
def filter_docs():
    return ansible_doc("filter", sorted(FUNCTIONS))


@pytest.mark.parametrize(("kind", "folder"), [("module", "modules"), ("lookup", "lookup")])
def test_every_module_and_lookup_shows_its_own_documentation(kind, folder):
    names = sorted(path.stem for path in (REPO / "plugins" / folder).glob("*.py"))
    assert names
    shown = ansible_doc(kind, names)
    for name in names:
        doc = shown[f"ollama.fleet.{name}"]
        assert doc["doc"][kind if kind == "module" else "name"] == name, name
        assert described(doc["doc"]["short_description"]) and described(doc["doc"]["description"]), name
        assert doc["examples"] and doc["return"], name


def test_filter_files_leave_documentation_to_the_sidecars():
    for path in sorted(FILTERS.glob("*.py")):
        assert not re.search(r"^\w*(DOCUMENTATION|EXAMPLES|RETURN)\w*\s*=", path.read_text(), re.M), path.name
    sidecars = {path.stem for path in FILTERS.glob("*.yml")}
    assert sidecars == set(FUNCTIONS), f"sidecars without a filter: {sidecars - set(FUNCTIONS)}; " + (
        f"filters without a sidecar: {set(FUNCTIONS) - sidecars}"
    )


def described(text):
    text = " ".join(text) if isinstance(text, list) else str(text or "")
    return bool(text.strip()) and not PLACEHOLDER.match(text.strip()) and len(text.split()) >= 3


@pytest.mark.parametrize("name", sorted(FUNCTIONS))
def test_filter_shows_its_own_documentation(name, filter_docs):
    shown = filter_docs[f"ollama.fleet.{name}"]
    doc = shown["doc"]
    assert doc["name"] == name and Path(doc["filename"]).name == f"{name}.yml"
    assert described(doc["short_description"]) and described(doc["description"]), name
    assert f"ollama.fleet.{name}" in (shown["examples"] or ""), f"{name}: no example that applies it"
    assert described(shown["return"]["_value"]["description"]) and shown["return"]["_value"]["type"], name

    parameters = list(inspect.signature(FUNCTIONS[name]).parameters.values())
    expected = {"_input": parameters[0], **{p.name: p for p in parameters[1:]}}
    assert set(doc["options"]) == set(expected), f"{name}: documented options differ from the function's parameters"
    for option, parameter in expected.items():
        entry = doc["options"][option]
        assert described(entry["description"]) and entry.get("type"), f"{name}: {option} is not described"
        has_default = parameter.default is not inspect.Parameter.empty
        assert bool(entry.get("required")) == (not has_default), f"{name}: {option}'s required is wrong"
        if has_default and parameter.default is not None:  # a tuple default reads as a list in YAML
            default = list(parameter.default) if isinstance(parameter.default, tuple) else parameter.default
            assert entry.get("default") == default, f"{name}: {option}'s default differs from the code's"
