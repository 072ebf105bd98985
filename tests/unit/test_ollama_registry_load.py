"""ollama_registry_load against real registries (Debian's docker-registry, distribution 2.8) on loopback."""

import hashlib
import importlib.util
import json
import os
import re
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from conftest import REPO, free_port

LIBRARY = REPO / "plugins/modules"
REGISTRY_BIN = "/usr/bin/docker-registry"
MANIFEST_TYPES = "application/vnd.docker.distribution.manifest.v2+json, application/vnd.oci.image.manifest.v1+json"

# the module's file, loaded as Ansible runs it: by its path, not as a package
_spec = importlib.util.spec_from_file_location("ollama_registry_load", LIBRARY / "ollama_registry_load.py")
mod = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(mod)

needs_registry = pytest.mark.skipif(
    not os.access(REGISTRY_BIN, os.X_OK), reason=f"{REGISTRY_BIN} absent (apt-get install docker-registry)"
)


class Registry:
    """One `docker-registry serve` with filesystem storage under its folder, on a loopback port."""

    def __init__(self, folder: Path):
        folder.mkdir()
        self.log = folder / "registry.log"
        self.url = f"http://127.0.0.1:{free_port()}"
        config = folder / "config.yml"
        config.write_text(
            "version: 0.1\n"
            "log: {level: info, accesslog: {disabled: false}}\n"
            f"storage: {{filesystem: {{rootdirectory: {folder / 'data'}}}, delete: {{enabled: true}}}}\n"
            f"http: {{addr: {self.url.removeprefix('http://')}}}\n"
        )
        self.proc = subprocess.Popen(
            [REGISTRY_BIN, "serve", str(config)], stdout=open(self.log, "w"), stderr=subprocess.STDOUT
        )
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            try:
                if self.request("GET", "/v2/")[0] == 200:
                    return
            except OSError:
                time.sleep(0.1)
        self.stop()
        raise RuntimeError(f"docker-registry did not answer on {self.url}:\n{self.log.read_text()}")

    def request(self, method, path, headers=None):
        """(status, headers, body) of one request; HTTP errors are answers, not exceptions."""
        req = urllib.request.Request(self.url + path, headers=headers or {}, method=method)
        try:
            with urllib.request.urlopen(req, timeout=10) as resp:
                return resp.status, resp.headers, resp.read()
        except urllib.error.HTTPError as exc:
            return exc.code, exc.headers, exc.read()

    def manifest(self, repository, tag):
        return self.request("GET", f"/v2/{repository}/manifests/{tag}", {"Accept": MANIFEST_TYPES})

    def blob_gets(self):
        """Blob downloads this registry served, from its access log."""
        return re.findall(r'"GET (/v2/\S+/blobs/sha256:[0-9a-f]{64}) HTTP/1.1" 200', self.log.read_text())

    def stop(self):
        self.proc.terminate()
        self.proc.wait(timeout=10)


@pytest.fixture
def registries(tmp_path):
    """Start registries on demand (registries() -> Registry); stop them all afterwards."""
    if not os.access(REGISTRY_BIN, os.X_OK):
        pytest.skip(f"{REGISTRY_BIN} absent (apt-get install docker-registry)")
    started = []

    def start():
        started.append(Registry(tmp_path / f"registry{len(started)}"))
        return started[-1]

    yield start
    for registry in started:
        registry.stop()


def write_blob(store: Path, data: bytes) -> dict:
    digest = "sha256:" + hashlib.sha256(data).hexdigest()
    (store / "blobs" / digest.replace(":", "-")).write_bytes(data)
    return {"digest": digest, "size": len(data)}


def make_store(store: Path, path="registry.ollama.ai/library/tiny/1b") -> dict:
    """A small Ollama store with one model, laid out and typed as `ollama pull` leaves it."""
    (store / "blobs").mkdir(parents=True, exist_ok=True)
    weights = write_blob(store, os.urandom(256 * 1024))
    template = write_blob(store, b"{{ .Prompt }}")
    config = write_blob(
        store,
        json.dumps(
            {
                "model_format": "gguf",
                "model_family": "llama",
                "file_type": "Q4_K_M",
                "rootfs": {"type": "layers", "diff_ids": [weights["digest"], template["digest"]]},
            }
        ).encode(),
    )
    manifest = {
        "schemaVersion": 2,
        "mediaType": "application/vnd.docker.distribution.manifest.v2+json",
        "config": {"mediaType": "application/vnd.docker.container.image.v1+json", **config},
        "layers": [
            {"mediaType": "application/vnd.ollama.image.model", **weights},
            {"mediaType": "application/vnd.ollama.image.template", **template},
        ],
    }
    manifest_file = store / "manifests" / path
    manifest_file.parent.mkdir(parents=True, exist_ok=True)
    manifest_file.write_bytes(json.dumps(manifest, separators=(",", ":")).encode())
    return {
        "file": manifest_file,
        "digest": "sha256:" + hashlib.sha256(manifest_file.read_bytes()).hexdigest(),
        "blobs": [config, weights, template],
    }


def load(tmp_path, check=False, fails=False, **args):
    """Run the module through `ansible localhost -m`; return its result and the combined output."""
    tree = tmp_path / f"tree{time.monotonic_ns()}"
    env = {**os.environ, "ANSIBLE_CONFIG": str(REPO / "ansible.cfg")}
    ansible = str(Path(sys.executable).parent / "ansible")
    run = subprocess.run(
        [ansible, "localhost", "-c", "local", "-e", f"ansible_python_interpreter={sys.executable}",
         "-m", "ollama.fleet.ollama_registry_load", "-a", json.dumps(args), "--tree", str(tree), *(["--check"] if check else [])],
        env=env, capture_output=True, text=True, cwd=REPO, timeout=120,
    )  # fmt: skip
    # 2: the task failed (the tree callback leaves "failed" out of the result it writes)
    assert run.returncode == (2 if fails else 0), run.stdout + run.stderr
    return json.loads((tree / "localhost").read_text()), run.stdout + run.stderr


def assert_clean_failure(result, output, changed=False):
    assert result["changed"] is changed and "msg" in result
    assert "Traceback" not in output and "exception" not in result and "module_stderr" not in result


@needs_registry
def test_store_to_registry_pushes_every_blob_and_the_manifest_byte_for_byte(tmp_path, registries):
    store = make_store(tmp_path / "store")
    registry = registries()
    result, _ = load(tmp_path, registry=registry.url, source=str(tmp_path / "store"), models=["tiny:1b"])
    blob_bytes = sum(b["size"] for b in store["blobs"])
    assert result["changed"] is True
    assert result["models"] == [
        {
            "name": "tiny:1b",
            "repository": "library/tiny",
            "tag": "1b",
            "digest": store["digest"],
            "pushed": True,
            "blobs_fetched": 3,
            "bytes_fetched": blob_bytes,
            "blobs_missing": 3,
            "bytes_missing": blob_bytes,
            "blobs_present": 0,
        }
    ]
    status, headers, body = registry.manifest("library/tiny", "1b")
    assert status == 200 and body == store["file"].read_bytes()
    assert headers["Docker-Content-Digest"] == store["digest"]
    assert headers["Content-Type"] == "application/vnd.docker.distribution.manifest.v2+json"
    for blob in store["blobs"]:
        status, _, data = registry.request("GET", f"/v2/library/tiny/blobs/{blob['digest']}")
        assert status == 200 and data == (tmp_path / "store/blobs" / blob["digest"].replace(":", "-")).read_bytes()

    again, _ = load(tmp_path, registry=registry.url, source=str(tmp_path / "store"), models=["tiny:1b"])
    assert again["changed"] is False
    (model,) = again["models"]
    assert (model["pushed"], model["blobs_fetched"], model["bytes_fetched"], model["blobs_present"]) == (False, 0, 0, 3)


@needs_registry
def test_mirror_from_a_registry_fetches_each_blob_once(tmp_path, registries):
    store = make_store(tmp_path / "store", "registry.ollama.ai/team/tiny/latest")
    upstream, site = registries(), registries()
    load(tmp_path, registry=upstream.url, source=str(tmp_path / "store"), models=["team/tiny"])
    gets_before = len(upstream.blob_gets())

    result, _ = load(tmp_path, registry=site.url, source=upstream.url, models=["Team/Tiny:latest"])
    (model,) = result["models"]
    assert (model["repository"], model["tag"], model["digest"]) == ("team/tiny", "latest", store["digest"])
    assert model["blobs_fetched"] == 3 and model["bytes_fetched"] == sum(b["size"] for b in store["blobs"])
    fetched = upstream.blob_gets()[gets_before:]
    assert sorted(fetched) == sorted(f"/v2/team/tiny/blobs/{b['digest']}" for b in store["blobs"])
    status, headers, body = site.manifest("team/tiny", "latest")
    assert status == 200 and body == store["file"].read_bytes() and headers["Docker-Content-Digest"] == store["digest"]

    again, _ = load(tmp_path, registry=site.url, source=upstream.url, models=["team/tiny"])
    assert again["changed"] is False and again["models"][0]["bytes_fetched"] == 0
    assert upstream.blob_gets()[gets_before:] == fetched


@needs_registry
def test_a_corrupt_blob_fails_with_both_digests_and_pushes_nothing(tmp_path, registries):
    store = make_store(tmp_path / "store")
    config, weights, _ = store["blobs"]
    weights_file = tmp_path / "store/blobs" / weights["digest"].replace(":", "-")
    data = bytearray(weights_file.read_bytes())
    data[1000] ^= 0xFF
    weights_file.write_bytes(bytes(data))
    registry = registries()

    result, output = load(
        tmp_path, fails=True, registry=registry.url, source=str(tmp_path / "store"), models=["tiny:1b"]
    )
    assert_clean_failure(result, output)
    actual = "sha256:" + hashlib.sha256(data).hexdigest()
    assert result["msg"] == (
        f"tiny:1b: blob {weights['digest']} from source {tmp_path / 'store'} has digest {actual}"
        f" (expected {weights['digest']}); nothing of tiny:1b was pushed to {registry.url}"
    )
    assert registry.manifest("library/tiny", "1b")[0] == 404
    assert registry.request("HEAD", f"/v2/library/tiny/blobs/{config['digest']}")[0] == 404


@needs_registry
def test_an_unknown_model_names_the_model_and_where_it_was_looked_for(tmp_path, registries):
    make_store(tmp_path / "store")
    registry = registries()
    result, output = load(
        tmp_path, fails=True, registry=registry.url, source=str(tmp_path / "store"), models=["tiny:1b", "nope:7b"]
    )
    assert_clean_failure(result, output, changed=True)  # tiny:1b, loaded before, stays reported
    assert [m["name"] for m in result["models"]] == ["tiny:1b"] and result["models"][0]["pushed"] is True
    missing = tmp_path / "store/manifests/registry.ollama.ai/library/nope/7b"
    assert result["msg"] == f"nope:7b is not in source {tmp_path / 'store'}: no manifest at {missing}"
    result, output = load(tmp_path, fails=True, registry=registries().url, source=registry.url, models=["nope:7b"])
    assert_clean_failure(result, output)
    assert result["msg"].startswith(
        f"nope:7b is not in source {registry.url}: GET {registry.url}/v2/library/nope/manifests/7b answered HTTP 404: "
    )
    assert '"code":"NAME_UNKNOWN"' in result["msg"] or '"code":"MANIFEST_UNKNOWN"' in result["msg"]


def test_an_unreachable_registry_is_a_message_not_a_traceback(tmp_path):
    make_store(tmp_path / "store")
    closed = f"http://127.0.0.1:{free_port()}"
    result, output = load(tmp_path, fails=True, registry=closed, source=str(tmp_path / "store"), models=["tiny:1b"])
    assert_clean_failure(result, output)
    assert result["msg"].startswith(
        f"tiny:1b: destination {closed}: HEAD {closed}/v2/library/tiny/manifests/1b failed: "
    )


@needs_registry
def test_check_mode_reports_what_it_would_push_and_pushes_nothing(tmp_path, registries):
    store = make_store(tmp_path / "store")
    registry = registries()
    result, _ = load(tmp_path, check=True, registry=registry.url, source=str(tmp_path / "store"), models=["tiny:1b"])
    (model,) = result["models"]
    assert result["changed"] is True and model["pushed"] is True
    assert (model["blobs_missing"], model["bytes_missing"]) == (3, sum(b["size"] for b in store["blobs"]))
    assert (model["blobs_fetched"], model["bytes_fetched"]) == (0, 0)
    assert registry.manifest("library/tiny", "1b")[0] == 404
    assert [registry.request("HEAD", f"/v2/library/tiny/blobs/{b['digest']}")[0] for b in store["blobs"]] == [404] * 3
    assert all(method in ("GET", "HEAD") for method in re.findall(r'"([A-Z]+) /v2/', registry.log.read_text()))


@pytest.mark.parametrize(
    ("name", "parts"),
    [
        ("llama3.1:8b", ("registry.ollama.ai", "library", "llama3.1", "8b")),
        ("Llama3.1", ("registry.ollama.ai", "library", "llama3.1", "latest")),
        ("myorg/coder:v2", ("registry.ollama.ai", "myorg", "coder", "v2")),
        ("reg.example:5000/myorg/coder", ("reg.example:5000", "myorg", "coder", "latest")),
        ("hf.co/bartowski/qwen2.5-7b:Q4_K_M", ("hf.co", "bartowski", "qwen2.5-7b", "q4_k_m")),
    ],
)
def test_names_are_read_like_ollama(name, parts):
    lower, _ = mod.parse_name(name)
    assert (lower["host"], lower["namespace"], lower["model"], lower["tag"]) == parts


# every other spelling: tests/model_names.json, for the core this module reads names with
@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("a/b/c/d", "'a/b/c/d' is not a model name: its host must be"),
        ("my.org/coder", "'my.org/coder' is not a model name: its namespace must be"),
        ("tiny:", "'tiny:' is not a model name: its tag must be"),
        ("-x", "'-x' is not a model name: its model must be"),
    ],
)
def test_bad_names_are_refused_with_the_part(name, message):
    with pytest.raises(mod.LoadError, match=re.escape(message)):
        mod.parse_name(name)


def test_the_module_is_documented():
    doc = subprocess.run(
        [str(Path(sys.executable).parent / "ansible-doc"), "-j", "ollama.fleet.ollama_registry_load"],
        env={**os.environ, "ANSIBLE_CONFIG": str(REPO / "ansible.cfg")}, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert doc.returncode == 0, doc.stderr
    info = json.loads(doc.stdout)["ollama.fleet.ollama_registry_load"]
    assert set(info["doc"]["options"]) == {"registry", "source", "models", "ca_file", "timeout"}
    assert set(info["return"]["models"]["contains"]) == {
        "name", "repository", "tag", "digest", "pushed", "blobs_fetched", "bytes_fetched",
        "blobs_missing", "bytes_missing", "blobs_present",
    }  # fmt: skip
