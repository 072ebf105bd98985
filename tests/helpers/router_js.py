"""The gateway's router (roles/ollama_gateway/files/ollama_gateway.js) outside nginx, for unit tests: a program
run with the router imported as `gw`, under njs (Debian's njs 0.7.9, the engine nginx runs it with) or Node.js."""

import json
import shutil
import subprocess
from pathlib import Path

import pytest

ROUTER = Path(__file__).resolve().parents[2] / "roles" / "ollama_gateway" / "files" / "ollama_gateway.js"
ENGINES = ["njs", "node"]


def run(engine: str, tmp_path: Path, program: str, timeout: float = 120) -> list:
    """PROGRAM's output under ENGINE, one JSON value a line (njs's console.log breaks a line at 2048 bytes)."""
    binary = shutil.which(engine) or shutil.which("nodejs" if engine == "node" else "njs")
    if binary is None:
        pytest.fail(f"{engine} is missing: make test-packages installs it")
    (tmp_path / "ollama_gateway.js").write_text(ROUTER.read_text())
    if engine == "njs":
        (tmp_path / "run.mjs").write_text("import gw from 'ollama_gateway.js';\n" + program)
        args = [binary, "-t", "module", "-p", str(tmp_path), str(tmp_path / "run.mjs")]
    else:
        module = json.dumps(str(tmp_path / "ollama_gateway.js"))
        args = [binary, "--input-type=module", "-e", f"import gw from {module};\n" + program]
    done = subprocess.run(args, capture_output=True, text=True, check=True, cwd=tmp_path, timeout=timeout)
    return [json.loads(line) for line in done.stdout.splitlines()]
