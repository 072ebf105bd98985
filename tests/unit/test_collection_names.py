"""The roles and playbooks call this collection's filters and modules by their fully qualified names
(ollama.fleet.NAME): those resolve the same from this repository and from an installed collection, where a
short name finds nothing (issue 29)."""

import ast
import re
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
USERS = [*REPO.glob("roles/**/*.yml"), *REPO.glob("roles/**/*.j2"), *REPO.glob("playbooks/**/*.yml"),
         *REPO.glob("molecule/**/*.yml"), *REPO.glob("tests/**/*.yml"), *REPO.glob("inventory/**/*.yml"),
         REPO / "site.yml"]  # fmt: skip


def filter_names():
    """Every filter plugins/filter defines: the keys of each FilterModule.filters() dict."""
    names = set()
    for path in (REPO / "plugins/filter").glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.FunctionDef) and node.name == "filters":
                for returned in ast.walk(node):
                    if isinstance(returned, ast.Dict):
                        names |= {k.value for k in returned.keys if isinstance(k, ast.Constant)}
    return names


def test_filters_are_called_by_their_collection_name():
    names = filter_names()
    assert len(names) >= 40, names  # the parse above found them
    short = re.compile(rf"""(\|\s*|(?:map|select|reject)\(\s*['"])({"|".join(sorted(names))})\b""")
    found = [f"{path.relative_to(REPO)}: {m.group(2)}" for path in USERS for m in short.finditer(path.read_text())]
    assert found == []


def test_modules_are_called_by_their_collection_name():
    names = {path.stem for path in (REPO / "plugins/modules").glob("*.py")}
    short = re.compile(rf"^\s*(?:- )?({'|'.join(sorted(names))}):", re.M)
    found = [f"{path.relative_to(REPO)}: {m.group(1)}" for path in USERS for m in short.finditer(path.read_text())]
    assert found == [] and len(names) >= 5
