"""ansible-doc shows each module's own documentation, and each filter file's DOCUMENTATION parses and is shown for
the filter it names (issue 29). The other filters of a file have no sidecar documentation yet: ansible-doc shows
their file's text for them."""

import ast
import json
import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def ansible_doc(kind, names):
    run = subprocess.run(
        [str(Path(sys.executable).parent / "ansible-doc"), "-t", kind, "--json", *[f"ollama.fleet.{n}" for n in names]],
        capture_output=True, text=True, cwd=REPO, timeout=120, check=True,
        env={**os.environ, "ANSIBLE_CONFIG": str(REPO / "ansible.cfg")},
    )  # fmt: skip
    return json.loads(run.stdout)


def documented_filters():
    """The filter each plugins/filter file's DOCUMENTATION names."""
    names = []
    for path in sorted((REPO / "plugins/filter").glob("*.py")):
        for node in ast.parse(path.read_text()).body:
            if isinstance(node, ast.Assign) and getattr(node.targets[0], "id", "") == "DOCUMENTATION":
                names.append(
                    next(line.split(": ", 1)[1] for line in node.value.value.splitlines() if line.startswith("name: "))
                )
    return names


def test_every_module_shows_its_own_documentation():
    names = sorted(path.stem for path in (REPO / "plugins/modules").glob("*.py"))
    shown = ansible_doc("module", names)
    for name in names:
        doc = shown[f"ollama.fleet.{name}"]
        assert doc["doc"]["module"] == name and doc["doc"]["short_description"] and doc["doc"]["description"], name
        assert doc["examples"] and doc["return"], name


def test_every_filter_files_documentation_parses_and_names_its_filter():
    names = documented_filters()
    assert len(names) == len(list((REPO / "plugins/filter").glob("*.py")))
    shown = ansible_doc("filter", names)
    for name in names:
        doc = shown[f"ollama.fleet.{name}"]
        assert doc["doc"]["name"] == name and doc["doc"]["short_description"] and doc["examples"] and doc["return"], (
            name
        )
