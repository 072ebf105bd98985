"""The stand-in pulls over the registry protocol as Ollama v0.33 does: from a real registry (Debian's
docker-registry, distribution 2.8) and from tests/helpers/public_registry.py playing registry.ollama.ai."""

import hashlib
import json
import os
import subprocess
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
import standin_store
from conftest import free_port
from helpers import public_registry

REGISTRY_BIN = "/usr/bin/docker-registry"
needs_registry = pytest.mark.skipif(
    not os.access(REGISTRY_BIN, os.X_OK), reason=f"{REGISTRY_BIN} absent (apt-get install docker-registry)"
)


class DockerRegistry:
    """One `docker-registry serve` on loopback with filesystem storage in its folder; TLS when given a key pair."""

    def __init__(self, folder: Path, tls: tuple[Path, Path] | None = None):
        folder.mkdir()
        self.port = free_port()
        self.url = f"{'https' if tls else 'http'}://127.0.0.1:{self.port}"
        tls_line = f", tls: {{certificate: {tls[0]}, key: {tls[1]}}}" if tls else ""
        config = folder / "config.yml"
        config.write_text(
            "version: 0.1\nlog: {level: warn}\n"
            f"storage: {{filesystem: {{rootdirectory: {folder / 'data'}}}, delete: {{enabled: true}}}}\n"
            f"http: {{addr: 127.0.0.1:{self.port}{tls_line}}}\n"
        )
        self.log = folder / "registry.log"
        self.proc = subprocess.Popen([REGISTRY_BIN, "serve", str(config)], stdout=open(self.log, "w"), stderr=-2)
        self.context = None
        if tls:
            import ssl

            self.context = ssl.create_default_context(cafile=str(tls[0]))
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                urllib.request.urlopen(self.url + "/v2/", timeout=2, context=self.context).read()
                return
            except OSError:
                time.sleep(0.05)
        raise RuntimeError(f"docker-registry did not start:\n{self.log.read_text()}")

    def send(self, method: str, url: str, data: bytes = b"", headers: dict | None = None):
        url = url if url.startswith("http") else self.url + url
        req = urllib.request.Request(url, data=data, method=method, headers=headers or {})
        return urllib.request.urlopen(req, timeout=10, context=self.context)

    def push(self, name: str) -> str:
        """The catalogue image of `name` as `docker push` would put it; returns the registry's manifest digest."""
        manifest, blobs = standin_store.catalogue_image(name)
        model, tag = name.split(":")
        for digest, data in blobs.items():
            location = self.send("POST", f"/v2/library/{model}/blobs/uploads/").headers["Location"]
            sep = "&" if "?" in location else "?"
            self.send("PUT", f"{location}{sep}digest={digest}", data, {"Content-Type": "application/octet-stream"})
        headers = {"Content-Type": standin_store.DOCKER_MANIFEST}
        return self.send("PUT", f"/v2/library/{model}/manifests/{tag}", manifest, headers).headers[
            "Docker-Content-Digest"
        ]

    def stop(self):
        self.proc.terminate()
        self.proc.wait(timeout=10)


@pytest.fixture
def docker_registry(tmp_path):
    started = []

    def start(tls=None):
        registry = DockerRegistry(tmp_path / f"registry-{len(started)}", tls)
        started.append(registry)
        return registry

    yield start
    for registry in started:
        registry.stop()


@pytest.fixture
def internet(tmp_path):
    """public_registry on a loopback port, in this process: (url, log). internet(corrupt=(...)) for a bad one."""
    servers = []

    def start(corrupt=()):
        log = tmp_path / f"internet-{len(servers)}.jsonl"
        server = public_registry.make_server("127.0.0.1:0", log, corrupt)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        servers.append(server)
        return f"http://127.0.0.1:{server.server_address[1]}", log

    yield start
    for server in servers:
        server.shutdown()
        server.server_close()


def pull(server, model, **extra):
    """POST /api/pull streamed: the events, each with the time it arrived."""
    with server.post("/api/pull", {"model": model, **extra}, timeout=60) as resp:
        return [(time.monotonic(), json.loads(line)) for line in resp]


def statuses(events):
    return [e.get("status", e.get("error")) for _, e in events]


def blobs_in(models: Path) -> set[str]:
    return {p.name for p in (models / "blobs").iterdir()} if (models / "blobs").is_dir() else set()


def test_catalogue_image_is_deterministic_and_keeps_the_real_size():
    manifest, blobs = standin_store.catalogue_image("llama3.1:8b")
    assert standin_store.catalogue_image("registry.ollama.ai/library/llama3.1:8b") == (manifest, blobs)
    parsed = json.loads(manifest)
    assert list(parsed) == ["schemaVersion", "mediaType", "config", "layers"]
    assert manifest == json.dumps(parsed, separators=(",", ":")).encode(), "compact, as json.Marshal writes it"
    assert parsed["layers"][0]["size"] == 4920753328 and parsed["config"]["size"] == len(
        blobs[parsed["config"]["digest"]]
    )
    for digest, data in blobs.items():
        assert digest == "sha256:" + hashlib.sha256(data).hexdigest()
    assert len(blobs[parsed["layers"][0]["digest"]]) == standin_store.PLACEHOLDER_BYTES
    every = [d for name in standin_store.load_catalogue() for d in standin_store.catalogue_image(name)[1]]
    assert len(every) == len(set(every)), "no two catalogue models share a blob, so bytes per model add up"


@needs_registry
def test_pull_from_a_real_registry_keeps_the_registrys_digest(standin, docker_registry, tmp_path):
    registry = docker_registry()
    digest = registry.push("qwen3:0.6b")
    name = f"127.0.0.1:{registry.port}/library/qwen3:0.6b"
    server = standin()
    # without --insecure Ollama speaks https, which a plain-http registry cannot answer
    refused = server.cli("pull", name)
    url = f"https://127.0.0.1:{registry.port}/v2/library/qwen3/manifests/0.6b"
    assert refused.returncode == 1
    assert f'Error: pull model manifest: Get "{url}": http: server gave HTTP response to HTTPS client' in refused.stderr
    done = server.cli("pull", "--insecure", name)
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines()[0] == "pulling manifest" and done.stdout.splitlines()[-1] == "success"
    [tags] = server.get("/api/tags")["models"]
    assert (tags["name"], "sha256:" + tags["digest"], tags["size"]) == (name, digest, 522653767)
    stored = tmp_path / f"models/manifests/127.0.0.1:{registry.port}/library/qwen3/0.6b"
    assert "sha256:" + hashlib.sha256(stored.read_bytes()).hexdigest() == digest
    # the same model synthesised in process has the same digest; it shares the blobs
    local = standin(OLLAMA_MODELS=str(tmp_path / "other"))
    local.post("/api/pull", {"model": "qwen3:0.6b", "stream": False}).read()
    assert local.get("/api/tags")["models"][0]["digest"] == tags["digest"]
    # and it runs: metadata found by model:tag whatever the host
    answer = json.load(server.post("/api/generate", {"model": name, "prompt": "hi", "stream": False}))
    assert answer["model"] == name and answer["done"] is True


@needs_registry
def test_copy_then_delete_keeps_the_blobs_the_copy_needs(standin, docker_registry, tmp_path):
    registry = docker_registry()
    registry.push("qwen3:0.6b")
    name = f"127.0.0.1:{registry.port}/library/qwen3:0.6b"
    server = standin()
    assert statuses(pull(server, name, insecure=True))[-1] == "success"
    models = tmp_path / "models"
    blobs = blobs_in(models)
    assert len(blobs) == 2
    with server.post("/api/copy", {"source": name, "destination": "qwen3:0.6b"}) as resp:
        assert (resp.status, resp.read()) == (200, b"")
    req = urllib.request.Request(server.url + "/api/delete", data=json.dumps({"model": name}).encode(), method="DELETE")
    with urllib.request.urlopen(req) as resp:
        assert (resp.status, resp.read()) == (200, b"")
    assert [m["name"] for m in server.get("/api/tags")["models"]] == ["qwen3:0.6b"]
    assert blobs_in(models) == blobs, "the copy still references them"
    assert not (models / f"manifests/127.0.0.1:{registry.port}").exists(), "emptied directories go too"
    req = urllib.request.Request(server.url + "/api/delete", data=b'{"model": "qwen3:0.6b"}', method="DELETE")
    urllib.request.urlopen(req).read()
    assert blobs_in(models) == set() and server.get("/api/tags")["models"] == []
    with pytest.raises(urllib.error.HTTPError) as gone:
        urllib.request.urlopen(req)
    assert (gone.value.code, json.load(gone.value)) == (404, {"error": "model 'qwen3:0.6b' not found"})
    with pytest.raises(urllib.error.HTTPError) as missing:
        server.post("/api/copy", {"source": "qwen3:0.6b", "destination": "x:1b"})
    assert (missing.value.code, json.load(missing.value)) == (404, {"error": 'model "qwen3:0.6b" not found'})


@needs_registry
def test_https_registry_is_trusted_once_its_ca_is(standin, docker_registry, tmp_path):
    cert, key = tmp_path / "registry.pem", tmp_path / "registry.key"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", "/CN=registry"]
        + ["-addext", "subjectAltName=IP:127.0.0.1", "-keyout", str(key), "-out", str(cert)],
        check=True,
        capture_output=True,
    )
    registry = docker_registry(tls=(cert, key))
    registry.push("qwen3:0.6b")
    name = f"127.0.0.1:{registry.port}/library/qwen3:0.6b"
    untrusted = standin()
    last = pull(untrusted, name)[-1][1]
    url = f"https://127.0.0.1:{registry.port}/v2/library/qwen3/manifests/0.6b"
    assert last == {
        "error": f'pull model manifest: Get "{url}": tls: failed to verify certificate: '
        "x509: certificate signed by unknown authority"
    }
    trusted = standin(SSL_CERT_FILE=str(cert), OLLAMA_MODELS=str(tmp_path / "trusted"))
    assert statuses(pull(trusted, name))[-1] == "success"


def test_a_blob_corrupted_in_transit_fails_the_pull_and_stores_no_manifest(standin, internet, tmp_path):
    url, _ = internet(corrupt=("llama3.1:8b",))
    server = standin(OLLAMA_STANDIN_PUBLIC_REGISTRY=url)
    manifest, blobs = standin_store.catalogue_image("llama3.1:8b")
    weights = json.loads(manifest)["layers"][0]["digest"]
    bad = bytearray(blobs[weights])
    bad[0] ^= 1
    error = (
        f"digest mismatch, file must be downloaded again: want {weights}, got sha256:{hashlib.sha256(bad).hexdigest()}"
    )
    events = pull(server, "llama3.1:8b")
    assert statuses(events)[-2:] == ["verifying sha256 digest", error]
    models = tmp_path / "models"
    assert not (models / "manifests/registry.ollama.ai/library/llama3.1/8b").exists()
    # Ollama removes the blob that failed its check; the config, which passed, stays (server/images.go PullModel)
    assert weights.replace(":", "-") not in blobs_in(models)
    assert not [b for b in blobs_in(models) if "partial" in b]
    with pytest.raises(urllib.error.HTTPError) as failed:
        server.post("/api/pull", {"model": "llama3.1:8b", "stream": False})
    assert (failed.value.code, json.load(failed.value)) == (500, {"error": error})
    assert server.get("/api/tags")["models"] == []


def test_registry_errors_end_the_pull_with_ollamas_text(standin, internet):
    url, _ = internet()
    server = standin(OLLAMA_STANDIN_PUBLIC_REGISTRY=url)
    assert statuses(pull(server, "no-such-model:1b")) == [
        "pulling manifest",
        "pull model manifest: file does not exist",
    ]
    port = free_port()  # nothing listens there
    refused = f"127.0.0.1:{port}/library/qwen3:0.6b"
    with pytest.raises(urllib.error.HTTPError) as failed:
        server.post("/api/pull", {"model": refused, "insecure": True, "stream": False})
    manifest_url = f"http://127.0.0.1:{port}/v2/library/qwen3/manifests/0.6b"
    expected = f'pull model manifest: Get "{manifest_url}": dial tcp 127.0.0.1:{port}: connect: connection refused'
    assert (failed.value.code, json.load(failed.value)) == (500, {"error": expected})
    with pytest.raises(urllib.error.HTTPError) as nameless:
        server.post("/api/pull", {"model": ""})
    assert (nameless.value.code, json.load(nameless.value)) == (400, {"error": "invalid model name"})


def test_public_registry_serves_each_model_once_per_host(standin, internet, tmp_path):
    url, log = internet()
    server = standin(OLLAMA_STANDIN_PUBLIC_REGISTRY=url)
    first = pull(server, "llama3.1:8b")
    second = pull(server, "llama3.1:8b")
    assert statuses(first)[-1] == statuses(second)[-1] == "success"
    assert public_registry.blob_bytes(log) == {("127.0.0.1", "llama3.1:8b"): public_registry.image_bytes("llama3.1:8b")}
    manifests = [e for e in public_registry.read_log(log) if "/manifests/" in e["path"]]
    assert [(e["method"], e["status"], e["model"]) for e in manifests] == [("GET", 200, "llama3.1:8b")] * 2
    # the second pull found both blobs stored: reported complete at once, nothing fetched
    layers = [e for _, e in second if "digest" in e]
    assert len(layers) == 2 and all(e["completed"] == e["total"] for e in layers)
    # what came over the registry is what the stand-in synthesises without one
    offline = standin(OLLAMA_MODELS=str(tmp_path / "offline"))
    offline.post("/api/pull", {"model": "llama3.1:8b", "stream": False}).read()
    assert offline.get("/api/tags")["models"][0]["digest"] == server.get("/api/tags")["models"][0]["digest"]


def test_progress_arrives_while_a_slow_pull_runs(standin, internet):
    url, _ = internet()
    server = standin(OLLAMA_STANDIN_PUBLIC_REGISTRY=url, OLLAMA_STANDIN_PULL_MS="2000")
    started = time.monotonic()
    events = pull(server, "qwen3:0.6b")
    weights = json.loads(standin_store.catalogue_image("qwen3:0.6b")[0])["layers"][0]["digest"]
    progress = [(t - started, e["completed"]) for t, e in events if e.get("digest") == weights]
    assert all(e["total"] == 522653767 for _, e in events if e.get("digest") == weights)
    assert progress[0][0] < 0.5, "the first progress line comes at once"
    assert progress[-1][1] == 522653767 and progress[-1][0] > 1.8, "the weights take PULL_MS"
    during = [c for t, c in progress if 0.5 < t < 1.5]
    assert len(during) >= 5 and 0 < min(during) < max(during) < 522653767, "completed grows while it runs"
    assert statuses(events)[-3:] == ["verifying sha256 digest", "writing manifest", "success"]
    again = time.monotonic()
    pull(server, "qwen3:0.6b")
    assert time.monotonic() - again < 1, "a pull that finds every blob stored does not wait"
