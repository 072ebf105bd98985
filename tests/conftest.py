"""Shared fixtures: the simulated GPU library and a running Ollama stand-in on loopback."""

import json
import os
import socket
import subprocess
import time
import urllib.request
from pathlib import Path

import pytest

TESTS = Path(__file__).resolve().parent
SPECS = TESTS / "gpu_sim" / "specs"
REPO = TESTS.parent
FIXTURES = TESTS / "unit" / "fixtures"


@pytest.fixture(scope="session")
def fake_nvml_dir() -> Path:
    """Build the fake libnvidia-ml.so.1 once; return the folder to put on LD_LIBRARY_PATH."""
    build = TESTS / "gpu_sim" / "build"
    subprocess.run(["make", "-s", "-C", str(TESTS / "gpu_sim")], check=True)
    return build


@pytest.fixture(scope="session")
def standin_archive(tmp_path_factory) -> Path:
    import build_archive

    return build_archive.build("0.33.0", tmp_path_factory.mktemp("release"))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Standin:
    """One `ollama serve` from the stand-in archive, on a loopback port."""

    def __init__(self, root: Path, env: dict, log: Path):
        self.binary = root / "bin/ollama"
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        full_env = {**os.environ, "OLLAMA_HOST": f"127.0.0.1:{self.port}", **env}
        self.env = full_env
        self.log = log
        self.proc = subprocess.Popen(
            [str(self.binary), "serve"], env=full_env, stdout=open(log, "w"), stderr=subprocess.STDOUT
        )
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                self.get("/api/version")
                return
            except OSError:
                time.sleep(0.05)
        raise RuntimeError(f"stand-in did not start:\n{log.read_text()}")

    def get(self, path: str):
        with urllib.request.urlopen(self.url + path, timeout=10) as r:
            return json.load(r)

    def post(self, path: str, body: dict, timeout: float = 30):
        req = urllib.request.Request(
            self.url + path, data=json.dumps(body).encode(), headers={"Content-Type": "application/json"}
        )
        return urllib.request.urlopen(req, timeout=timeout)

    def pull(self, *models: str) -> None:
        for model in models:
            self.post("/api/pull", {"model": model, "stream": False}).read()

    def load(self, model: str, **fields) -> dict:
        """Load MODEL as a warm-up does (an empty prompt; FIELDS such as keep_alive, options); its answer."""
        with self.post("/api/generate", {"model": model, **fields}, timeout=60) as answer:
            return json.load(answer)

    def cli(self, *args) -> subprocess.CompletedProcess:
        return subprocess.run([str(self.binary), *args], env=self.env, capture_output=True, text=True)

    def stop(self):
        self.proc.terminate()
        self.proc.wait(timeout=10)


@pytest.fixture
def standin(standin_archive, tmp_path):
    """Factory: standin(OLLAMA_NUM_PARALLEL="4", ...) starts one server with that environment."""
    import tarfile

    root = tmp_path / "ollama"
    with tarfile.open(standin_archive) as tar:
        tar.extractall(root, filter="data")
    started = []

    def start(**env):
        base = {
            "OLLAMA_MODELS": str(tmp_path / "models"),
            "NVML_SIM_SPEC": str(SPECS / "l20x8.json"),
            "OLLAMA_STANDIN_LOAD_MS": "0",
            "OLLAMA_STANDIN_LOAD_MIB_S": "0",  # loads at once; tests that time loads set it
            "OLLAMA_STANDIN_PULL_MS": "0",
            # no knobs file unless a test writes this one (never the machine's /etc/ollama-standin.env)
            "OLLAMA_STANDIN_KNOBS": str(tmp_path / "standin-knobs.env"),
        }
        s = Standin(root, {**base, **env}, tmp_path / f"serve-{len(started)}.log")
        started.append(s)
        return s

    yield start
    for s in started:
        s.stop()
