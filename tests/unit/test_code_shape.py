"""The shape rules of this repository, checked where they hold (ruff checks mccabe ≤ 10, pyproject.toml): every
Python function fits on a screen (60 lines) and every task file reads as one step (80 lines), so a function or a
task can be read on its own."""

import ast
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
SKIP = {".venv", ".cache", "collections", "build", ".git"}
DAEMONS = ["ollama-gateway-drain", "ollama-gateway-health", "ollama-gateway-vip-check"]


def python_files():
    files = [p for p in REPO.rglob("*.py") if not SKIP & set(p.relative_to(REPO).parts)]
    return files + [REPO / "roles/ollama_gateway/files" / name for name in DAEMONS]


def test_every_python_function_is_at_most_60_lines():
    long = [
        f"{path.relative_to(REPO)}:{node.lineno} {node.name} ({node.end_lineno - node.lineno + 1} lines)"
        for path in python_files()
        for node in ast.walk(ast.parse(path.read_text()))
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef) and node.end_lineno - node.lineno >= 60
    ]
    assert long == []


def test_every_task_file_is_at_most_80_lines():
    long = [
        f"{path.relative_to(REPO)} ({len(path.read_text().splitlines())} lines)"
        for path in sorted(REPO.glob("roles/*/tasks/*.yml"))
        if len(path.read_text().splitlines()) > 80
    ]
    assert long == []
