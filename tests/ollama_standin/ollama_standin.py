#!/usr/bin/env python3
"""An API-compatible stand-in for `ollama`, for tests and the sandbox only.

It speaks Ollama's HTTP API and the CLI verbs the roles use, honours the same environment
(OLLAMA_HOST, OLLAMA_MODELS, OLLAMA_NUM_PARALLEL, OLLAMA_MAX_QUEUE, OLLAMA_KEEP_ALIVE,
OLLAMA_CONTEXT_LENGTH, OLLAMA_KV_CACHE_TYPE, OLLAMA_LOAD_TIMEOUT, OLLAMA_MAX_LOADED_MODELS,
CUDA_VISIBLE_DEVICES) and reads the simulated GPUs from the same spec as the fake NVML library.

Behaviour that follows Ollama v0.33.0-rc2 (a comment above each names the function):
- GET /api/ps answers exactly Ollama's fields per model: name, model, size, digest, details, expires_at,
  size_vram, context_length; longest remaining keep-alive first (server/routes.go PsHandler,
  api/types.go ProcessModelResponse).
- Two queues. OLLAMA_MAX_QUEUE bounds only the requests waiting in the scheduler for a load or a reload;
  beyond it 503 "server busy, ..." (server/sched.go getRunner, processPending). Requests to a loaded model
  wait for one of its slots without any bound (llm/llama_server.go, the runner's semaphore).
- Slots: OLLAMA_NUM_PARALLEL, but one for embedding models (no completion capability) and for the
  architectures mllama, qwen3vl, qwen35, qwen3next, lfm2, nemotron_h and their variants, whose KV cache is
  then sized for one (server/sched.go load; server/images.go ggufCapabilities).
- Context: options.num_ctx, else OLLAMA_CONTEXT_LENGTH, else by visible VRAM (< 23 GiB 4096, 32768, from
  47 GiB 262144), at least 4 (2048 for vision models), capped at the training context (server/routes.go
  modelOptions, server/sched.go getRunner and effectiveContext).
- Reload: a request whose runner options (that context, num_batch, num_gpu, main_gpu, use_mmap, num_thread)
  differ from the loaded runner's waits until the runner has no requests, then the model is unloaded and
  loaded again: load time paid again, placement recomputed (server/sched.go needsReload, processPending).
  keep_alive 0 unloads once the last request finishes; with an empty prompt it unloads without loading
  (server/sched.go processCompleted, expireRunner; server/routes.go GenerateHandler, ChatHandler).
- Placement: weights + KV cache (context x slots) + compute buffer; what the visible GPUs cannot hold beside
  llama.cpp's 1 GiB margin per device spills to CPU, shown as size_vram < size (llm/llama_server.go
  MemorySize); num_gpu 0 runs on CPU (server/sched.go processPending). At most OLLAMA_MAX_LOADED_MODELS
  (0: 3 per GPU) models; the next one waits for an idle one to unload (server/sched.go findRunnerToUnload).
- Load time: a runner start plus the weights streamed from disk to VRAM; OLLAMA_LOAD_TIMEOUT fails a start
  that shows no progress (llm/llama_server.go WaitUntilRunning).
- On a loopback listener, a request whose Host is not local is refused with 403 (server/routes.go,
  allowedHostsMiddleware); request keys match case-insensitively and a value of the wrong type is answered
  400 with Go's json error (api/types.go, encoding/json), an option of the wrong type 500 (api/types.go
  Options.FromMap); a handler that fails answers 500 instead of dropping the connection (gin's Recovery), so
  nginx never sees a healthy instance fail.
- Pulls speak the registry protocol (server/images.go PullModel, pullModelManifest, makeRequest;
  server/download.go downloadBlob): a name whose host is not registry.ollama.ai, such as
  10.213.0.23:5000/library/llama3.1:8b, is fetched from https://HOST/v2/<ns>/<model>/manifests/<tag> with
  the system's trust store, http when the request says "insecure": true (`ollama pull --insecure`), then each
  layer and the config from .../blobs/<digest> unless blobs/ has it, each checked against its digest
  ("digest mismatch, file must be downloaded again: ..."), then the manifest's bytes as received; 404 is
  "pull model manifest: file does not exist", a failed connection Go's `Get "URL": dial tcp ...` text.
  The store is Ollama's: manifests/<host>/<ns>/<model>/<tag>, blobs/sha256-<hex> (types/model/name.go,
  manifest/paths.go); /api/tags shows other hosts' models by their full name.
- /api/copy copies the manifest's bytes (server/images.go CopyModel); /api/delete removes the manifest and
  then the blobs no remaining manifest references (manifest/manifest.go RemoveLayers); both answer 200 with
  no body, 404 `model "x" not found` and `model 'x' not found` (server/routes.go CopyHandler, DeleteHandler).

Not Ollama's, for tests only: every response carries X-Ollama-Instance (host:port) and X-Ollama-Gpus (the
UUIDs it may use), so a test behind a gateway can tell who answered. GET /standin/ps: the instance
(host:port), its GPUs, the OLLAMA_* and CUDA_VISIBLE_DEVICES environment the process got, the knobs in
effect, and per loaded model its GPUs, slots (the effective parallel), context, active and waiting
requests. GET /standin/stats: scheduler queue and slot counts, so tests wait on state instead of sleeping.

Simplifications: a catalogue model's weights blob is a placeholder of PLACEHOLDER_BYTES (1 MiB) pseudo-random
bytes while its manifest carries the real size (catalogue_image), so pull progress reports the descriptor's
size as total and scales completed to it, where Ollama reports the blob's Content-Length; a blob is fetched
with one GET after a HEAD, not in Range parts, and is not resumed (its partial file goes when a pull fails);
/api/tags `size` sums the layers without the config's few hundred bytes. Loaded models do not take VRAM from
each other's placement.

Knobs that exist only here (OLLAMA_STANDIN_*): TTFT_MS (50), TOKENS_PER_SEC (50), TOKENS (24, answer length
when num_predict is unset), LOAD_MS (200, runner start), LOAD_MIB_S (1536, weights from disk to VRAM in MiB/s,
0 = instant: a 70B Q4 of ~40 GiB loads in ~27 s), PULL_MS (100: the blobs a pull fetches arrive over this time,
shared by descriptor size; a pull that finds every blob stored takes none of it), PUBLIC_REGISTRY (a base URL
such as http://10.213.0.1:5001, e.g. tests/helpers/public_registry.py, that plays registry.ollama.ai for library
models; unset, they come from the catalogue in process, the same bytes). The environment sets them, else the
file named by OLLAMA_STANDIN_KNOBS (default /etc/ollama-standin.env, KEY=VALUE lines): on test hosts the
instances run as systemd units whose environment the toolkit controls.
"""

from __future__ import annotations

import email.parser
import email.policy
import errno
import functools
import hashlib
import http.client
import io
import ipaddress
import json
import os
import re
import socket
import socketserver
import ssl
import sys
import threading
import time
from collections import deque
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib import error as urlerror
from urllib import request as urlrequest
from urllib.parse import parse_qs, urlparse

import go_body  # beside this file, here and in the release archive

VERSION = "@VERSION@"  # replaced when the archive is built
HERE = Path(__file__).resolve().parent
GIB = 1024**3
MIB = 1024**2
# llama.cpp --fit keeps this much free on every device (FACTS.md).
FIT_MARGIN = 1024 * MIB
ERR_BUSY = "server busy, please try again.  maximum pending requests exceeded"
KNOBS_FILE = "/etc/ollama-standin.env"
# server/sched.go load (v0.33.0-rc2): architectures (Config.ModelFamily) that are not safe with num_parallel > 1.
SINGLE_SLOT_FAMILIES = (
    "mllama",
    "qwen3vl",
    "qwen3vlmoe",
    "qwen35",
    "qwen35moe",
    "qwen3next",
    "lfm2",
    "lfm2moe",
    "nemotron_h",
    "nemotron_h_moe",
    "nemotron_h_omni",
)

# The JSON fields of Ollama's native requests that the stand-in reads, with their Go types (api/types.go,
# v0.33.0-rc2), decoded as encoding/json does (go_body.py): keys matched by folding ("Model" sets model),
# options objects merged, a value of another type answered 400 (server/routes.go).
REQUEST_FIELDS = {
    "/api/generate": (
        "GenerateRequest",
        {"model": "string", "prompt": "string", "stream": "bool", "keep_alive": "*api.Duration"},
    ),
    "/api/chat": (
        "ChatRequest",
        {"model": "string", "messages": "[]api.Message", "stream": "bool", "keep_alive": "*api.Duration"},
    ),
    "/api/embed": ("EmbedRequest", {"model": "string", "keep_alive": "*api.Duration"}),
    "/api/embeddings": ("EmbeddingRequest", {"model": "string", "prompt": "string", "keep_alive": "*api.Duration"}),
    "/api/show": ("ShowRequest", {"model": "string", "name": "string"}),
    "/api/pull": ("PullRequest", {"model": "string", "name": "string", "stream": "bool", "insecure": "bool"}),
    "/api/delete": ("DeleteRequest", {"model": "string", "name": "string"}),
    "/api/copy": ("CopyRequest", {"source": "string", "destination": "string"}),
}
for _struct, _fields in REQUEST_FIELDS.values():
    _fields["options"] = "map[string]interface {}"
# Options of api.Options / api.Runner the stand-in reads, and Go's kind (api/types.go Options.FromMap):
# a value of another type fails the request with 500 "option %q must be of type ...".
OPTION_KINDS = {
    "num_ctx": "integer",
    "num_predict": "integer",
    "num_gpu": "integer",
    "num_batch": "integer",
    "num_thread": "integer",
    "main_gpu": "integer",
    "use_mmap": "boolean",
    "temperature": "float32",
}
WORDS = (
    "the quick brown fox jumps over the lazy dog while seven GPUs hum along "
    "and the gateway keeps every stream flowing token by token"
).split()


# ----------------------------------------------------------------- settings
def parse_duration(value: str | None, default: float) -> float:
    """Ollama's durations: Go strings ("5m", "1h30m"), plain seconds, negative = forever."""
    if value is None or value.strip() == "":
        return default
    value = value.strip()
    try:
        seconds = float(value)
    except ValueError:
        parts = re.findall(r"(-?[\d.]+)(ms|s|m|h)", value)
        if not parts or "".join(n + u for n, u in parts) != value:
            return default
        unit = {"ms": 0.001, "s": 1, "m": 60, "h": 3600}
        seconds = sum(float(n) * unit[u] for n, u in parts)
    return float("inf") if seconds < 0 else seconds


def parse_host(value: str | None) -> tuple[str, int]:
    value = (value or "").strip() or "127.0.0.1:11434"
    value = re.sub(r"^https?://", "", value).rstrip("/")
    host, _, port = value.rpartition(":") if ":" in value else (value, "", "")
    return (host.strip("[]") or "127.0.0.1"), int(port or 11434)


def env_int(env, name: str, default: int) -> int:
    try:
        return int(env.get(name) or default)
    except ValueError:
        return default


def read_knobs(path: str) -> dict[str, str]:
    """The OLLAMA_STANDIN_* lines of a KEY=VALUE file (# comments, optional quotes); other lines are ignored."""
    try:
        text = Path(path).read_text()
    except OSError:
        return {}
    knobs = {}
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        key, sep, value = line.partition("=")
        key, value = key.strip(), value.strip()
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
            value = value[1:-1]
        if sep and key.startswith("OLLAMA_STANDIN_") and key != "OLLAMA_STANDIN_KNOBS":
            knobs[key] = value
        else:
            log("WARN", "knobs file: ignored a line that sets no OLLAMA_STANDIN_* knob", path=path, line=line)
    return knobs


class Config:
    def __init__(self, env=None):
        env = os.environ if env is None else env
        self.host, self.port = parse_host(env.get("OLLAMA_HOST"))
        self.models = Path(env.get("OLLAMA_MODELS") or Path.home() / ".ollama/models")
        self.num_parallel = max(1, env_int(env, "OLLAMA_NUM_PARALLEL", 1))
        self.max_queue = env_int(env, "OLLAMA_MAX_QUEUE", 512)
        self.keep_alive = parse_duration(env.get("OLLAMA_KEEP_ALIVE"), 300)
        self.load_timeout = parse_duration(env.get("OLLAMA_LOAD_TIMEOUT"), 300)
        if self.load_timeout <= 0:
            self.load_timeout = float("inf")
        self.context_length = env_int(env, "OLLAMA_CONTEXT_LENGTH", 0)
        # envconfig NoCloud: strconv.ParseBool's true values (no server config file here)
        self.no_cloud = (env.get("OLLAMA_NO_CLOUD") or "").strip().lower() in ("1", "t", "true")
        self.max_loaded = env_int(env, "OLLAMA_MAX_LOADED_MODELS", 0)
        self.kv_bytes = {"q8_0": 1.0625, "q4_0": 0.5625}.get(env.get("OLLAMA_KV_CACHE_TYPE", ""), 2)
        # The stand-in's own knobs: the file first (test hosts' units get only what the toolkit sets),
        # the process environment over it.
        self.knobs_file = env.get("OLLAMA_STANDIN_KNOBS") or KNOBS_FILE
        self.knobs = {
            **read_knobs(self.knobs_file),
            **{k: v for k, v in env.items() if k.startswith("OLLAMA_STANDIN_") and k != "OLLAMA_STANDIN_KNOBS"},
        }
        self.ttft = env_int(self.knobs, "OLLAMA_STANDIN_TTFT_MS", 50) / 1000
        self.tps = max(1, env_int(self.knobs, "OLLAMA_STANDIN_TOKENS_PER_SEC", 50))
        self.tokens = env_int(self.knobs, "OLLAMA_STANDIN_TOKENS", 24)
        self.load_time = env_int(self.knobs, "OLLAMA_STANDIN_LOAD_MS", 200) / 1000
        self.load_mib_s = max(0, env_int(self.knobs, "OLLAMA_STANDIN_LOAD_MIB_S", 1536))
        self.pull_time = env_int(self.knobs, "OLLAMA_STANDIN_PULL_MS", 100) / 1000
        # plays registry.ollama.ai when set (a base URL such as http://10.213.0.1:5001); else pulls of library
        # models are served from the catalogue in process
        self.public_registry = self.knobs.get("OLLAMA_STANDIN_PUBLIC_REGISTRY", "").strip().rstrip("/")
        self.gpus = visible_gpus(env)
        if not self.max_loaded:
            self.max_loaded = 3 * max(1, len(self.gpus))

    def load_seconds(self, size: int) -> float:
        """A load: the runner's start, then the weights from disk to VRAM at LOAD_MIB_S (0: at once)."""
        return self.load_time + (size / MIB / self.load_mib_s if self.load_mib_s else 0)


def visible_gpus(env) -> list[dict]:
    """The GPUs CUDA would show this process: the spec's, filtered by CUDA_VISIBLE_DEVICES."""
    spec_path = env.get("NVML_SIM_SPEC") or "/etc/nvidia-sim/gpus.json"
    try:
        spec = json.loads(Path(spec_path).read_text())
    except (OSError, ValueError):
        return []
    if spec.get("init_error"):
        return []
    devices = []
    for index, gpu in enumerate(spec.get("gpus", [])):
        devices.append({**gpu, "index": index})
        for mig in gpu.get("mig_devices", []) if gpu.get("mig_mode") else []:
            devices.append({**mig, "index": None, "parent": gpu["uuid"]})
    wanted = env.get("CUDA_VISIBLE_DEVICES")
    if wanted is None:
        return [d for d in devices if d["index"] is not None]
    chosen = []
    for token in [t.strip() for t in wanted.split(",") if t.strip()]:
        if token == "-1":
            return []
        match = [d for d in devices if d["uuid"] == token or str(d["index"]) == token]
        if not match:
            break  # CUDA stops at the first invalid entry
        chosen.append(match[0])
    return chosen


def dumps(value) -> str:
    """JSON as Go's encoder writes it: no spaces."""
    return json.dumps(value, separators=(",", ":"))


def log(level: str, msg: str, **fields) -> None:
    extra = " ".join(f"{k}={dumps(v) if isinstance(v, str) and ' ' in v else v}" for k, v in fields.items())
    stamp = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"
    print(f'time={stamp} level={level} source=standin msg="{msg}" {extra}'.rstrip(), file=sys.stderr, flush=True)


def now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")


# ----------------------------------------------------------------- model names, images and the store
DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_CONFIG = "application/vnd.docker.container.image.v1+json"
OLLAMA_MODEL = "application/vnd.ollama.image.model"
DEFAULT_HOST = "registry.ollama.ai"
# The weights blob of every catalogue model: this many pseudo-random bytes, so byte counts in tests mean
# something while a registry holding the whole catalogue stays small.
PLACEHOLDER_BYTES = MIB
CHUNK = 16 << 10


def name_parts(name: str) -> tuple[str, str, str, str]:
    """host, namespace, model, tag of a name as types/model/name.go ParseNameBare splits it (defaults
    registry.ollama.ai, library, latest; a scheme is not part of it), after internal/modelref ParseRef trims
    spaces and ":local". Lower case: Ollama finds a stored model whatever the case of the name
    (server/routes.go getExistingName, EqualFold), and the store holds lower-case names."""
    name = re.sub(r":local$", "", name.strip(), flags=re.IGNORECASE).lower()
    tag = "latest"
    if name.rfind(":") > name.rfind("/"):
        name, tag = name.rsplit(":", 1)
    parts = name.split("/")
    model = parts.pop()
    namespace = parts.pop() if parts else "library"
    host = "/".join(parts).split("://")[-1] if parts else DEFAULT_HOST
    return host, namespace, model, tag


def normalise(name: str) -> str:
    """The name Ollama shows for a model (types/model/name.go DisplayShortest): registry.ollama.ai/library/x,
    library/x and https://registry.ollama.ai/library/x are x:latest; another host keeps host/namespace/."""
    host, namespace, model, tag = name_parts(name)
    if (host, namespace) == (DEFAULT_HOST, "library"):
        return f"{model}:{tag}"
    return f"{host}/{namespace}/{model}:{tag}"


@functools.cache
def load_catalogue() -> dict[str, dict]:
    """catalogue.json by short name (model:tag)."""
    raw = json.loads((HERE / "catalogue.json").read_text())
    return {normalise(k): v for k, v in raw.items() if not k.startswith("_")}


def go_json(value) -> bytes:
    """json.Marshal's bytes for the ASCII values used here: compact, keys in the order given (a Go struct's
    field order). Go also escapes <, > and & and writes UTF-8 raw; neither occurs in these values."""
    return json.dumps(value, separators=(",", ":")).encode()


def sha256_digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


@functools.lru_cache(maxsize=16)
def catalogue_image(name: str) -> tuple[bytes, dict[str, bytes]]:
    """A catalogue model as a registry serves it: the manifest's bytes and the blobs by "sha256:<hex>".

    Deterministic, so a model synthesised in process and the same model pulled from any registry have the same
    manifest digest. The manifest is a manifest/manifest.go Manifest as json.Marshal writes it (field order
    schemaVersion, mediaType, config, layers; Layer: mediaType, digest, size). Its one model layer's `size` is
    the catalogue's real size, so whoever reads sizes from manifests (/api/tags, VRAM checks) sees real ones;
    the blob behind it is PLACEHOLDER_BYTES pseudo-random bytes derived from the name. The config is what
    registry.ollama.ai serves (types/model/config.go ConfigV2, plus the rootfs that older Ollama wrote, which
    makes it unique per model so that no two models share a blob). KeyError for a name not in the catalogue."""
    short = normalise(name)
    entry = load_catalogue()[short]
    weights = hashlib.shake_256(f"ollama stand-in weights for {short}".encode()).digest(PLACEHOLDER_BYTES)
    weights_digest = sha256_digest(weights)
    family = entry.get("family", "")
    config = go_json(
        {
            "model_format": "gguf",
            "model_family": family,
            "model_families": [family],
            "model_type": entry.get("parameter_size", ""),
            "file_type": entry.get("quantization_level", ""),
            "architecture": "amd64",
            "os": "linux",
            "rootfs": {"type": "layers", "diff_ids": [weights_digest]},
        }
    )
    config_digest = sha256_digest(config)
    manifest = go_json(
        {
            "schemaVersion": 2,
            "mediaType": DOCKER_MANIFEST,
            "config": {"mediaType": DOCKER_CONFIG, "digest": config_digest, "size": len(config)},
            "layers": [{"mediaType": OLLAMA_MODEL, "digest": weights_digest, "size": entry["size"]}],
        }
    )
    return manifest, {weights_digest: weights, config_digest: config}


def manifest_digests(manifest: dict) -> set[str]:
    """The blobs a manifest references: its layers and its config."""
    digests = {layer.get("digest", "") for layer in manifest.get("layers", [])}
    digests.add(manifest.get("config", {}).get("digest", ""))
    return digests - {""}


class Store:
    """OLLAMA_MODELS as Ollama lays it out (manifest/paths.go, types/model/name.go Filepath):
    manifests/<host>/<namespace>/<model>/<tag> holding the manifest's bytes as pulled, blobs/sha256-<hex>."""

    # server/download.go blobDownloadManager: one download of a digest at a time in a process; a second pull
    # of the same blob waits for it and then finds it in the store.
    _blob_locks: dict[str, threading.Lock] = {}
    _blob_locks_guard = threading.Lock()

    def __init__(self, root: Path):
        self.root = root
        self.catalogue = load_catalogue()

    def manifest_path(self, name: str) -> Path:
        return self.root.joinpath("manifests", *name_parts(name))

    def blob_path(self, digest: str) -> Path:
        if not re.fullmatch(r"sha256:[0-9a-f]{64}", digest):
            raise ValueError(f"invalid digest format: {digest!r}")  # manifest/paths.go ErrInvalidDigestFormat
        return self.root / "blobs" / digest.replace(":", "-")

    def blob_lock(self, digest: str) -> threading.Lock:
        with self._blob_locks_guard:
            return self._blob_locks.setdefault(digest, threading.Lock())

    def read_manifest(self, name: str) -> dict | None:
        """The parsed manifest, None when there is none or it is corrupt (manifest.ParseNamedManifest)."""
        try:
            return json.loads(self.manifest_path(name).read_bytes())
        except (OSError, ValueError):
            return None

    def get(self, name: str) -> dict | None:
        """A stored model; its metadata comes from the catalogue entry of its model:tag, whatever the host or
        namespace it was pulled from. digest: sha256 of the manifest file (manifest.ParseNamedManifest)."""
        path = self.manifest_path(name)
        try:
            data = path.read_bytes()
            manifest = json.loads(data)
        except (OSError, ValueError):
            return None
        _, _, model, tag = name_parts(name)
        return {
            "name": normalise(name),
            "manifest": manifest,
            "digest": hashlib.sha256(data).hexdigest(),
            "modified": datetime.fromtimestamp(path.stat().st_mtime, UTC),
            # Ollama's Manifest.Size adds the config's few hundred bytes; the catalogue's sizes are the library's
            # totals, so the layers alone carry them here.
            "size": sum(layer["size"] for layer in manifest["layers"]),
            "entry": self.catalogue.get(f"{model}:{tag}", {}),
        }

    def names(self) -> list[str]:
        """Every stored model by the name Ollama shows (manifest.Manifests globs manifests/*/*/*/*)."""
        base = self.root / "manifests"
        found = (p.relative_to(base).parts for p in base.glob("*/*/*/*") if p.is_file() and p.suffix != ".partial")
        return sorted(normalise(f"{host}/{ns}/{model}:{tag}") for host, ns, model, tag in found)

    def write_manifest(self, name: str, data: bytes) -> None:
        path = self.manifest_path(name)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + ".partial")
        tmp.write_bytes(data)
        tmp.rename(path)  # a reader never sees half a manifest

    def copy(self, source: str, destination: str) -> bool:
        """server/images.go CopyModel: the manifest's bytes as they are, so the digest stays."""
        src, dst = self.manifest_path(source), self.manifest_path(destination)
        if not src.is_file():
            return False
        if src != dst:
            self.write_manifest(destination, src.read_bytes())
        return True

    def delete(self, name: str) -> bool:
        """server/routes.go DeleteHandler: the manifest goes, empty directories with it (manifest.Remove,
        PruneDirectory), then its blobs that no remaining manifest references (Manifest.RemoveLayers)."""
        path = self.manifest_path(name)
        manifest = self.read_manifest(name)
        if manifest is None:
            return False
        path.unlink()
        for parent in list(path.parents)[:3]:  # tag's model, namespace and host directories, if now empty
            try:
                parent.rmdir()
            except OSError:
                break
        self.remove_unused(manifest_digests(manifest))
        return True

    def remove_unused(self, digests: set[str]) -> None:
        """server/images.go deleteUnusedLayers: remove those of the blobs no manifest references (corrupt
        manifests are skipped, as Manifests(true) does)."""
        for name in self.names():
            digests = digests - manifest_digests(self.read_manifest(name) or {})
        for digest in digests:
            self.blob_path(digest).unlink(missing_ok=True)


# ----------------------------------------------------------------- pulls
class PullError(Exception):
    """A pull failed; the message is Ollama's error text."""


def go_request_error(method: str, url: str, exc: Exception) -> str:
    """What Go's net/http says when a request fails before any answer: `Get "URL": <reason>` with the reasons
    a pull meets (refused, no route, no such host, a timeout, TLS)."""
    parsed = urlparse(url)
    port = parsed.port or (443 if parsed.scheme == "https" else 80)
    where = f"{parsed.hostname}:{port}"
    reason = getattr(exc, "reason", exc)
    if isinstance(reason, ssl.SSLCertVerificationError):
        # OpenSSL's X509_V_ERR 18-21: self-signed, self-signed in chain, no local issuer, leaf unverifiable
        unknown = reason.verify_code in (18, 19, 20, 21)
        detail = "certificate signed by unknown authority" if unknown else reason.verify_message
        text = f"tls: failed to verify certificate: x509: {detail}"
    elif isinstance(reason, ssl.SSLError) and "WRONG_VERSION_NUMBER" in str(reason):
        text = "http: server gave HTTP response to HTTPS client"
    elif isinstance(reason, socket.gaierror):
        text = f"dial tcp: lookup {parsed.hostname}: no such host"
    elif isinstance(reason, TimeoutError):
        text = f"dial tcp {where}: i/o timeout"
    elif isinstance(reason, OSError) and reason.errno in (errno.ECONNREFUSED, errno.EHOSTUNREACH, errno.ENETUNREACH):
        text = f"dial tcp {where}: connect: {os.strerror(reason.errno).lower()}"
    else:
        text = str(reason)
    return f'{method.capitalize()} "{url}": {text}'


class Registry:
    """A registry spoken to as Ollama does (server/images.go makeRequest, makeRequestWithRetry,
    pullModelManifest; server/download.go blobDownload.Prepare and run): https with the system's trust store,
    the Accept header of a pull, 404 as "file does not exist", another error status as "<code>: <body>"."""

    def __init__(self, base: str, repository: str):
        self.base = base.rstrip("/")
        self.repository = repository  # <namespace>/<model>, n.DisplayNamespaceModel()
        self.opener = urlrequest.build_opener(urlrequest.HTTPSHandler(context=ssl.create_default_context()))

    def request(self, method: str, path: str, headers: dict | None = None):
        url = f"{self.base}/v2/{self.repository}/{path}"
        agent = f"ollama/{VERSION} (amd64 linux) Go/go1.24.0"  # makeRequest's User-Agent
        req = urlrequest.Request(url, method=method, headers={**(headers or {}), "User-Agent": agent})
        try:
            return self.opener.open(req, timeout=30)  # Go's DefaultTransport dials for at most 30 s
        except urlerror.HTTPError as exc:
            body = exc.read().decode(errors="replace")
            exc.close()
            raise PullError("file does not exist" if exc.code == 404 else f"{exc.code}: {body}") from None
        except (urlerror.URLError, OSError) as exc:
            raise PullError(go_request_error(method, url, exc)) from None

    def manifest(self, tag: str) -> bytes:
        with self.request("GET", f"manifests/{tag}", {"Accept": DOCKER_MANIFEST}) as resp:
            return resp.read()

    def blob(self, digest: str):
        """The blob's length (Prepare's HEAD) and a response to read it from."""
        with self.request("HEAD", f"blobs/{digest}") as head:
            length = int(head.headers.get("Content-Length") or 0)
        return length, self.request("GET", f"blobs/{digest}")


class Catalogue:
    """The catalogue served in process, for a registry.ollama.ai name when no OLLAMA_STANDIN_PUBLIC_REGISTRY
    is set: the same bytes a registry would serve (catalogue_image), so the same digests."""

    def __init__(self, namespace: str, model: str):
        self.namespace, self.model = namespace, model

    def manifest(self, tag: str) -> bytes:
        if self.namespace != "library" or f"{self.model}:{tag}" not in load_catalogue():
            raise PullError("file does not exist")
        return catalogue_image(f"{self.model}:{tag}")[0]

    def blob(self, digest: str):
        for name in load_catalogue():
            blobs = catalogue_image(name)[1] if name.startswith(f"{self.model}:") else {}
            if digest in blobs:
                return len(blobs[digest]), io.BytesIO(blobs[digest])
        raise PullError("file does not exist")


def pull_source(cfg: Config, name: str, insecure: bool):
    """Where a name is pulled from: types/model/name.go BaseURL (https://<host>, http when the request is
    insecure, server/images.go makeRequest); registry.ollama.ai is OLLAMA_STANDIN_PUBLIC_REGISTRY, else the
    catalogue in process."""
    host, namespace, model, _ = name_parts(name)
    if host != DEFAULT_HOST:
        return Registry(f"{'http' if insecure else 'https'}://{host}", f"{namespace}/{model}")
    if cfg.public_registry:
        return Registry(cfg.public_registry, f"{namespace}/{model}")
    return Catalogue(namespace, model)


def pull_model(cfg: Config, store: Store, name: str, insecure: bool, emit) -> None:
    """server/images.go PullModel: the manifest, then each layer and the config (server/download.go
    downloadBlob: one already in blobs/ is not fetched), every fetched blob checked against its digest, then
    the manifest's bytes as received, then the blobs the old manifest of that name no longer needs pruned.
    emit(event) gets the progress Ollama streams; a failure raises PullError with Ollama's text."""
    _, _, _, tag = name_parts(name)
    source = pull_source(cfg, name, insecure)
    unused = manifest_digests(store.read_manifest(name) or {})
    emit({"status": "pulling manifest"})
    try:
        data = source.manifest(tag)
        manifest = json.loads(data)
        layers = [*manifest["layers"], manifest["config"]] if manifest["config"].get("digest") else manifest["layers"]
    except PullError as exc:
        raise PullError(f"pull model manifest: {exc}") from None
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        raise PullError(f"pull model manifest: {exc}") from None
    # OLLAMA_STANDIN_PULL_MS: the blobs that are fetched take this long together, each its share by size
    missing = sum(layer["size"] for layer in layers if not store.blob_path(layer["digest"]).exists())
    fetched = {}
    for layer in layers:
        seconds = cfg.pull_time * layer["size"] / missing if missing else 0
        got = fetch_blob(store, source, layer, seconds, emit)
        if got is not None:
            fetched[layer["digest"]] = got
    emit({"status": "verifying sha256 digest"})
    for want, got in fetched.items():
        if got != want:
            store.blob_path(want).unlink(missing_ok=True)
            raise PullError(f"digest mismatch, file must be downloaded again: want {want}, got {got}")
    emit({"status": "writing manifest"})
    store.write_manifest(name, data)
    unused -= manifest_digests(manifest)
    if unused:
        emit({"status": "removing unused layers"})
        store.remove_unused(unused)
    emit({"status": "success"})


def fetch_blob(store: Store, source, layer: dict, seconds: float, emit) -> str | None:
    """server/download.go downloadBlob: a blob already stored reports itself complete and is not fetched (None);
    else it streams into blobs/sha256-<hex>-partial, renamed into place when complete, and the digest of what
    arrived is returned for PullModel to verify. Progress is Ollama's "pulling <12 hex>" every 60 ms
    (blobDownload.Wait), its total the descriptor's size and completed scaled to it (the placeholder is
    smaller than the size it stands for). `seconds` paces the arrival (OLLAMA_STANDIN_PULL_MS)."""
    digest, total = layer["digest"], layer["size"]
    path = store.blob_path(digest)
    progress = {"status": f"pulling {digest[7:19]}", "digest": digest, "total": total}
    with store.blob_lock(digest):
        if path.exists():
            emit({**progress, "completed": total})
            return None
        length, body = source.blob(digest)
        path.parent.mkdir(parents=True, exist_ok=True)
        partial = path.with_name(path.name + "-partial")
        sha, got, started, shown = hashlib.sha256(), 0, time.monotonic(), 0.0
        try:
            with body, open(partial, "wb") as out:
                while chunk := read_chunk(body):
                    out.write(chunk)
                    sha.update(chunk)
                    got += len(chunk)
                    if seconds and length:
                        time.sleep(max(0.0, started + seconds * min(got / length, 1) - time.monotonic()))
                    if time.monotonic() - shown >= 0.06:
                        shown = time.monotonic()
                        emit({**progress, "completed": total * got // length if length else 0})
            emit({**progress, "completed": total * got // length if length else total})
            partial.rename(path)
        finally:
            partial.unlink(missing_ok=True)  # what a failed or abandoned download left
    return "sha256:" + sha.hexdigest()


def read_chunk(body) -> bytes:
    """The next bytes of a blob; a registry connection that breaks off fails the pull."""
    try:
        return body.read(CHUNK)
    except http.client.IncompleteRead:
        raise PullError("unexpected EOF") from None
    except (OSError, http.client.HTTPException) as exc:
        raise PullError(f"read blob: {exc}") from None


def details(entry: dict) -> dict:
    return {
        "parent_model": "",
        "format": "gguf",
        "family": entry.get("family", ""),
        "families": [entry.get("family", "")],
        "parameter_size": entry.get("parameter_size", ""),
        "quantization_level": entry.get("quantization_level", ""),
    }


# ----------------------------------------------------------------- scheduler
class Busy(Exception):
    pass


class LoadFailed(Exception):
    pass


def capabilities(entry: dict) -> list[str]:
    return entry.get("capabilities", ["completion"])


def model_parallel(num_parallel: int, entry: dict) -> int:
    """The slots a model gets (server/sched.go Scheduler.load): embedding models, which lack the completion
    capability (server/images.go ggufCapabilities: a GGUF with pooling_type), and the architectures in
    SINGLE_SLOT_FAMILIES are loaded with numParallel 1; only the latter is logged."""
    parallel = max(num_parallel, 1)
    if "completion" not in capabilities(entry):
        parallel = 1
    family = entry.get("family", "")
    if family in SINGLE_SLOT_FAMILIES and parallel != 1:
        parallel = 1
        log("WARN", "model architecture does not currently support parallel requests", architecture=family)
    return parallel


class Runner:
    """One loaded model: its options, slots, context and placement (server/sched.go runnerRef)."""

    def __init__(self, cfg: Config, model: dict, opts: dict, parallel: int):
        info = model["entry"].get("model_info", {})
        arch = info.get("general.architecture", "")
        self.name = model["name"]
        self.model = model
        self.opts = opts
        self.num_ctx = opts["num_ctx"]
        self.parallel = parallel
        # llm/llama_server.go NewLlamaServerRunner: semaphore.NewWeighted(numParallel); Completion, Chat and
        # Embedding wait on it for as long as it takes.
        self.slots = threading.Semaphore(parallel)
        self.refs = 0  # requests that hold the runner, in a slot or waiting for one (runnerRef.refCount)
        self.active = 0  # in a slot
        self.waiting = 0  # waiting for a slot
        self.expiring = False  # to unload once refs reaches 0
        self.keep_alive = cfg.keep_alive
        self.expires = time.monotonic() + cfg.keep_alive
        self.size, self.size_vram = self._place(cfg, info, arch, model["size"], opts["num_gpu"] != 0)
        self.gpus = [g["uuid"] for g in cfg.gpus] if self.size_vram else []

    def _place(self, cfg: Config, info: dict, arch: str, weights: int, on_gpu: bool) -> tuple[int, int]:
        layers = int(info.get(f"{arch}.block_count", 0))
        heads = int(info.get(f"{arch}.attention.head_count", 1) or 1)
        kv_heads = int(info.get(f"{arch}.attention.head_count_kv", heads) or heads)
        embd = int(info.get(f"{arch}.embedding_length", 0))
        head_dim = embd // heads if heads else 0
        k = int(info.get(f"{arch}.attention.key_length", head_dim))
        v = int(info.get(f"{arch}.attention.value_length", head_dim))
        # llama-server gets -c num_ctx*np -np np (llm/llama_server.go): the KV cache holds every slot's context
        ctx_total = self.num_ctx * self.parallel
        kv = int(ctx_total * layers * kv_heads * (k + v) * cfg.kv_bytes)
        need = weights + kv + 256 * MIB
        # server/sched.go processPending: num_gpu 0 loads with no GPU at all
        gpus = cfg.gpus if on_gpu else []
        room = sum(max(0, g["memory_total"] - g.get("memory_used", 0) - FIT_MARGIN) for g in gpus)
        if need > room:
            log("WARN", "model does not fit in VRAM, offloading to CPU", model=self.name, required=need, available=room)
        return need, min(need, room)

    def needs_reload(self, want: dict) -> bool:
        """server/sched.go runnerRef.needsReload: the runner options differ (num_ctx already capped at the
        training context); a request's num_gpu below 0 (automatic) matches any."""
        old, new = dict(self.opts), dict(want)
        if new["num_gpu"] < 0:
            old["num_gpu"] = new["num_gpu"] = -1
        return old != new


class Pending:
    """A request waiting in the scheduler for a load or a reload (server/sched.go LlmRequest)."""

    def __init__(self, model: dict, opts: dict, keep_alive: float | None):
        self.model = model
        self.opts = opts
        self.keep_alive = keep_alive
        self.runner: Runner | None = None
        self.error: Exception | None = None
        self.done = False


class Scheduler:
    """server/sched.go: requests for a loaded model whose options match go straight to its runner (getRunner);
    the rest wait in a queue of at most OLLAMA_MAX_QUEUE that one loop works through, one load at a time
    (processPending)."""

    def __init__(self, cfg: Config, store: Store):
        self.cfg = cfg
        self.store = store
        self.lock = threading.Condition()
        self.runners: dict[str, Runner] = {}
        self.pending: deque[Pending] = deque()  # pendingReqCh, buffered to OLLAMA_MAX_QUEUE
        self.loading: str | None = None  # the model processPending is working on (no longer in the queue)
        threading.Thread(target=self._process_pending, daemon=True).start()
        threading.Thread(target=self._reaper, daemon=True).start()

    def default_ctx(self) -> int:
        # server/routes.go: OLLAMA_CONTEXT_LENGTH, else the default context by total visible VRAM (>= 0.15.5).
        if self.cfg.context_length > 0:
            return self.cfg.context_length
        vram = sum(g["memory_total"] for g in self.cfg.gpus)
        return 262144 if vram >= 47 * GIB else 32768 if vram >= 23 * GIB else 4096

    def runner_options(self, model: dict, options: dict) -> dict:
        """The api.Runner options a request needs (server/routes.go modelOptions over api.DefaultOptions;
        server/sched.go getRunner: num_ctx at least 4, 2048 for vision; needsReload: capped at the training
        context by effectiveContext)."""
        entry = model["entry"]
        info = entry.get("model_info", {})
        train_ctx = int(info.get(f"{info.get('general.architecture', '')}.context_length", 0) or 0)

        def opt(name, default):
            value = options.get(name)
            return default if value is None else value

        num_ctx = max(int(opt("num_ctx", self.default_ctx())), 4)
        if "vision" in capabilities(entry):
            num_ctx = max(num_ctx, 2048)
        if train_ctx > 0:
            num_ctx = min(num_ctx, train_ctx)
        main_gpu = opt("main_gpu", None)
        return {
            "num_ctx": num_ctx,
            "num_batch": int(opt("num_batch", 512)),
            "num_gpu": int(opt("num_gpu", -1)),
            "main_gpu": None if main_gpu is None else int(main_gpu),
            "use_mmap": opt("use_mmap", None),
            "num_thread": int(opt("num_thread", 0)),
        }

    def acquire(self, model: dict, options: dict, keep_alive: float | None) -> tuple[Runner, float]:
        """A slot on a runner with the request's options; 503 (Busy) when the scheduler's queue is full.
        Returns the runner and the time until the scheduler handed it over (load_duration)."""
        want = self.runner_options(model, options)
        started = time.monotonic()
        with self.lock:
            runner = self.runners.get(model["name"])
            # server/sched.go getRunner: a loaded runner that needs no reload is used at once, past the queue
            if runner is not None and not runner.needs_reload(want):
                self._use(runner, keep_alive)
            else:
                # getRunner: `select { case s.pendingReqCh <- req: default: ErrMaxQueue }`
                if len(self.pending) >= self.cfg.max_queue:
                    raise Busy(ERR_BUSY)
                request = Pending(model, want, keep_alive)
                self.pending.append(request)
                self.lock.notify_all()
                while not request.done:
                    self.lock.wait()
                if request.error is not None:
                    raise request.error
                runner = request.runner
            runner.waiting += 1
        load = time.monotonic() - started
        runner.slots.acquire()  # llm/llama_server.go Completion: s.sem.Acquire, no bound on the wait
        with self.lock:
            runner.waiting -= 1
            runner.active += 1
        return runner, load

    def _use(self, runner: Runner, keep_alive: float | None) -> None:
        """server/sched.go useLoadedRunner: one more reference; the request's keep_alive becomes the runner's."""
        runner.refs += 1
        if keep_alive is not None:
            runner.keep_alive = keep_alive

    def release(self, runner: Runner) -> None:
        """server/sched.go processCompleted: the last request gone, a keep_alive of 0 (or a pending reload or
        eviction) unloads at once, else the keep_alive timer starts."""
        with self.lock:
            runner.active -= 1
            runner.refs -= 1
            runner.slots.release()
            if runner.refs <= 0:
                runner.expires = time.monotonic() + runner.keep_alive
                if runner.keep_alive == 0 or runner.expiring:
                    self._unload(runner)
            self.lock.notify_all()

    def expire(self, name: str) -> None:
        """server/sched.go expireRunner (an empty prompt with keep_alive 0): unload now, or once it is idle."""
        with self.lock:
            runner = self.runners.get(name)
            if runner is None:
                return
            runner.keep_alive = 0
            runner.expires = time.monotonic()
            runner.expiring = True
            if runner.refs <= 0:
                self._unload(runner)

    def _unload(self, runner: Runner) -> None:
        if self.runners.get(runner.name) is runner:
            del self.runners[runner.name]
            log("INFO", "model unloaded", model=runner.name)
        self.lock.notify_all()

    def _process_pending(self) -> None:
        """server/sched.go processPending: one queued request at a time."""
        while True:
            with self.lock:
                while not self.pending:
                    self.lock.wait()
                request = self.pending.popleft()
                self.loading = request.model["name"]
            try:
                self._schedule(request)
            except Exception as exc:  # a failed load fails this request only
                request.error = exc if isinstance(exc, LoadFailed) else LoadFailed(str(exc))
            finally:
                with self.lock:
                    request.done = True
                    self.loading = None
                    self.lock.notify_all()

    def _schedule(self, request: Pending) -> None:
        """server/sched.go processPending's inner loop: use the loaded runner; or expire the one that needs a
        reload (needsReload) or, at OLLAMA_MAX_LOADED_MODELS, another (findRunnerToUnload), wait for it to
        unload and look again; else load (Scheduler.load)."""
        name = request.model["name"]
        while True:
            with self.lock:
                runner = self.runners.get(name)
                if runner is not None and not runner.needs_reload(request.opts):
                    self._use(runner, request.keep_alive)
                    request.runner = runner
                    return
                if runner is not None:
                    log("INFO", "reloading", model=name, loaded=dumps(runner.opts), wanted=dumps(request.opts))
                    victim = runner
                elif len(self.runners) >= self.cfg.max_loaded:
                    victim = self._runner_to_unload()
                else:
                    victim = None
                if victim is not None:
                    # processPending: expire it at once and wait until its last request is done and it is gone.
                    # (Ollama sets its sessionDuration to 0, which a later request's keep_alive can undo; here the
                    # mark stays, so a reload cannot wait forever.)
                    victim.expiring = True
                    if victim.refs <= 0:
                        self._unload(victim)
                    while self.runners.get(victim.name) is victim:
                        self.lock.wait()
                    continue
            runner = self._load(request)
            with self.lock:
                self.runners[name] = runner
                self._use(runner, request.keep_alive)
                request.runner = runner
                return

    def _runner_to_unload(self) -> Runner:
        """server/sched.go findRunnerToUnload: by keep_alive, then name; an idle one first, else the first."""
        ordered = sorted(self.runners.values(), key=lambda r: (r.keep_alive, r.name))
        return next((r for r in ordered if r.refs <= 0), ordered[0])

    def _load(self, request: Pending) -> Runner:
        """server/sched.go load: the slots the model gets, then the runner's start and the weights."""
        model = request.model
        parallel = model_parallel(self.cfg.num_parallel, model["entry"])
        # llm/llama_server.go WaitUntilRunning: OLLAMA_LOAD_TIMEOUT is a stall timeout; streaming the weights
        # shows progress, a runner start longer than the timeout does not.
        if self.cfg.load_time > self.cfg.load_timeout:
            time.sleep(self.cfg.load_timeout)
            raise LoadFailed("timed out waiting for llama runner to start - progress 0.00")
        time.sleep(self.cfg.load_seconds(model["size"]))
        runner = Runner(self.cfg, model, request.opts, parallel)
        log(
            "INFO",
            "model loaded",
            model=runner.name,
            num_ctx=runner.num_ctx,
            parallel=runner.parallel,
            size_vram=runner.size_vram,
            size=runner.size,
        )
        return runner

    def _reaper(self) -> None:
        while True:
            time.sleep(0.5)
            with self.lock:
                for r in list(self.runners.values()):
                    if r.refs <= 0 and time.monotonic() >= r.expires:
                        self._unload(r)

    def ps(self) -> list[Runner]:
        with self.lock:
            return list(self.runners.values())


# ----------------------------------------------------------------- HTTP API
def embedding(text: str, dims: int) -> list[float]:
    seed = hashlib.sha256(text.encode()).digest()
    raw = [((seed[i % 32] * (i + 1)) % 251) / 125.0 - 1.0 for i in range(dims)]
    norm = sum(x * x for x in raw) ** 0.5 or 1.0
    return [round(x / norm, 6) for x in raw]


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    # Go's net/http sets TCP_NODELAY; without it small writes on kept-alive connections stall ~40 ms.
    disable_nagle_algorithm = True
    server_version = "ollama-standin"
    cfg: Config
    store: Store
    sched: Scheduler

    def log_message(self, fmt, *args):  # one line per request, like Ollama's [GIN] lines
        log("INFO", "request", method=self.command, path=self.path, status=args[1] if len(args) > 1 else "")

    # --- plumbing
    def _identity_headers(self):
        self.send_header("X-Ollama-Instance", f"{socket.gethostname()}:{self.cfg.port}")
        self.send_header("X-Ollama-Gpus", ",".join(g["uuid"] for g in self.cfg.gpus))

    def send_json(self, status: int, body, extra: dict | None = None):
        data = dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json; charset=utf-8")
        self.send_header("Content-Length", str(len(data)))
        self._identity_headers()
        for k, v in (extra or {}).items():
            self.send_header(k, v)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(data)

    def error(self, status: int, message: str):
        self.send_json(status, {"error": message})

    def start_stream(self, content_type: str):
        # HTTP/1.0 peers (nginx's default proxy_pass) get a body ended by closing, as Go's server does.
        self.chunked = self.request_version != "HTTP/1.0"
        self.send_response(200)
        self.send_header("Content-Type", content_type)
        if self.chunked:
            self.send_header("Transfer-Encoding", "chunked")
        else:
            self.close_connection = True
        self.send_header("Cache-Control", "no-cache")
        self._identity_headers()
        self.end_headers()

    def chunk(self, data: bytes):
        self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data) if self.chunked else data)
        self.wfile.flush()

    def end_stream(self):
        if self.chunked:
            self.wfile.write(b"0\r\n\r\n")
        self.wfile.flush()

    def body(self) -> dict | None:
        """The request's struct as Ollama decodes the body (go_body.py); None after answering 400."""
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        if self.path.split("?")[0] == "/v1/audio/transcriptions":
            return self.form(raw)
        if not raw.strip():
            return {}
        struct, fields = REQUEST_FIELDS.get(self.path.split("?")[0], ("", {}))
        try:
            data, error = go_body.decode(raw, struct, fields)
        except ValueError as exc:
            self.error(400, f"invalid character in request body: {exc}")
            return None
        if error:
            self.error(400, error)
            return None
        return data

    def form(self, raw: bytes) -> dict:
        """A multipart/form-data body as Go's Request.FormValue reads it: each field's first value (the URL's
        query for a field the body lacks); values as bytes."""
        message = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(
            b"Content-Type: " + (self.headers.get("Content-Type") or "").encode() + b"\r\n\r\n" + raw
        )
        fields = {}
        for part in message.iter_parts() if message.is_multipart() else []:
            fields.setdefault(part.get_param("name", header="content-disposition"), part.get_payload(decode=True))
        for key, values in parse_qs(urlparse(self.path).query).items():
            fields.setdefault(key, values[0].encode())
        return fields

    def option_error(self, options: dict) -> str | None:
        for name, kind in OPTION_KINDS.items():
            value = options.get(name)
            if value is None:
                continue
            number = isinstance(value, (int, float)) and not isinstance(value, bool)
            if not (isinstance(value, bool) if kind == "boolean" else number):
                return f'option "{name}" must be of type {kind}'
        return None

    # --- DNS-rebinding guard: server/routes.go allowedHostsMiddleware, allowedHost and isLocalIP (v0.33.0-rc2).
    # Only a server listening on loopback checks the Host header: an IP that is loopback, private (Go's
    # netip IsPrivate), unspecified or one of this machine's own; "localhost", the hostname, or a name
    # under .localhost/.local/.internal pass. Everything else gets 403 with an empty body.
    GO_PRIVATE = [ipaddress.ip_network(n) for n in ("10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "fc00::/7")]

    def host_allowed(self) -> bool:
        listener = ipaddress.ip_address(self.server.server_address[0])
        if not listener.is_loopback:
            return True
        name = self.split_host_port((self.headers.get("Host") or "").lower())
        try:
            ip = ipaddress.ip_address(name)
            ip = getattr(ip, "ipv4_mapped", None) or ip  # netip's Unmap: ::ffff:127.0.0.1 is loopback
        except ValueError:
            return name in ("", "localhost", socket.gethostname().lower()) or name.endswith(
                (".localhost", ".local", ".internal")
            )
        return ip.is_loopback or ip.is_unspecified or any(ip in n for n in self.GO_PRIVATE) or self.is_local_ip(ip)

    @staticmethod
    def split_host_port(host: str) -> str:
        """Go's net.SplitHostPort, falling back to the whole value when it fails (no port, bare IPv6)."""
        if host.startswith("["):
            end = host.find("]")
            port = host[end + 2 :]
            return host[1:end] if end > 0 and host[end + 1 : end + 2] == ":" and ":" not in port else host
        return host.split(":")[0] if host.count(":") == 1 else host

    @staticmethod
    def is_local_ip(ip) -> bool:
        """isLocalIP: an address of one of this machine's interfaces (approximated by its hostname's addresses)."""
        try:
            infos = socket.getaddrinfo(socket.gethostname(), None)
        except OSError:
            return False
        return any(ipaddress.ip_address(info[4][0].split("%")[0]) == ip for info in infos)

    def guard(self) -> bool:
        """True when the request may go on; else it has been answered 403 as Ollama does."""
        if self.host_allowed():
            return True
        self.discard_body()
        self.send_response(403)
        self.send_header("Content-Length", "0")
        self._identity_headers()
        self.end_headers()
        return False

    def discard_body(self) -> None:
        """A body the handler does not read: Go's server discards up to 256 KiB of it to keep the connection,
        and closes the connection beyond that (net/http server.go), so it is never read as a request."""
        length = int(self.headers.get("Content-Length") or 0)
        if 0 < length <= 256 << 10:
            self.rfile.read(length)
            log("WARN", "discarded an unread request body", method=self.command, path=self.path, bytes=length)
        elif length or self.headers.get("Transfer-Encoding"):
            self.close_connection = True
            log("WARN", "unread request body too large or chunked, closing", method=self.command, path=self.path)

    # --- routing
    def do_HEAD(self):
        self.do_GET()

    def do_OPTIONS(self):
        # No CORS here: Ollama answers a preflight with an allowed Origin in gin-contrib/cors (before the
        # Host guard); what remains, an allowed Host's OPTIONS, the guard answers 204 itself.
        if self.guard():  # a refused request's body is discarded by the guard itself
            self.discard_body()
            self.send_response(204)
            self._identity_headers()
            self.end_headers()

    def route(self, routes):
        """The handler for this path (query ignored), or None after answering 404 as Ollama does."""
        path = self.path.split("?")[0]
        model = path.removeprefix("/v1/models/")
        if self.command in ("GET", "HEAD") and model != path and model and "/" not in model:
            return lambda: self.v1_model(model)  # gin's /v1/models/:model (one path segment)
        handler = routes.get(path)
        if handler is None:
            self.error(404, "404 page not found")
        return handler

    def do_GET(self):
        if not self.guard():  # a refused request's body is discarded by the guard itself
            return
        self.discard_body()
        routes = {
            "/": self.root,
            "/api/version": self.version,
            "/api/status": self.cloud_status,
            "/api/tags": self.tags,
            "/api/ps": self.ps,
            "/v1/models": self.v1_models,
            "/standin/ps": self.standin_ps,
            "/standin/stats": self.stats,
        }
        handler = self.route(routes)
        if handler is not None:
            self.recovering(handler)

    def do_POST(self):
        routes = {
            "/api/generate": self.generate,
            "/api/chat": self.chat,
            "/api/show": self.show,
            "/api/pull": self.pull,
            "/api/embed": self.embed,
            "/api/embeddings": self.embeddings,
            "/api/copy": self.copy,
            "/api/create": self.unsupported,
            "/api/push": self.unsupported,
            "/v1/chat/completions": self.v1_chat,
            "/v1/completions": self.v1_completions,
            "/v1/embeddings": self.v1_embeddings,
            "/v1/messages": self.v1_messages,
            "/v1/responses": self.v1_responses,
            "/v1/audio/transcriptions": self.v1_transcriptions,
        }
        if not self.guard():
            return
        handler = self.route(routes)
        if handler is None:
            return
        data = self.body()
        if data is not None:
            self.recovering(handler, data)

    def send_response(self, code, message=None):
        self.answered = True
        super().send_response(code, message)

    def recovering(self, handler, *args):
        """gin's Recovery middleware: a handler that fails answers 500 and the connection stays; one that
        fails after its answer began (a stream) can only end the connection."""
        self.answered = False
        try:
            handler(*args)
        except (BrokenPipeError, ConnectionResetError):
            raise
        except Exception as exc:  # whatever went wrong, the client gets an answer
            log("ERROR", "handler failed", path=self.path, error=repr(exc))
            if self.answered:
                self.close_connection = True
            else:
                self.error(500, f"internal error: {exc}")

    def do_DELETE(self):
        if not self.guard():
            return
        if self.path != "/api/delete":
            return self.error(404, "404 page not found")
        data = self.body()
        if data is None:
            return
        # server/routes.go DeleteHandler: 404 with the name as given, else 200 with no body
        name = data.get("model") or data.get("name") or ""
        if not name.strip():
            return self.error(400, f"name {dumps(name)} is invalid")
        if not self.store.delete(name):
            return self.error(404, f"model '{name}' not found")
        self.send_empty(200)

    # --- endpoints
    def root(self):
        data = b"Ollama is running"
        self.send_response(200)
        self.send_header("Content-Type", "text/plain; charset=utf-8")
        self.send_header("Content-Length", str(len(data)))
        self._identity_headers()
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(data)

    def version(self):
        self.send_json(200, {"version": VERSION})

    def cloud_status(self):
        """server/routes.go StatusHandler: whether cloud models are off, and by what (envconfig NoCloudSource)."""
        self.send_json(
            200, {"cloud": {"disabled": self.cfg.no_cloud, "source": "env" if self.cfg.no_cloud else "none"}}
        )

    def tags(self):
        models = []
        for name in self.store.names():
            m = self.store.get(name)
            if m is None:  # deleted since the listing
                continue
            models.append(
                {
                    "name": name,
                    "model": name,
                    "modified_at": m["modified"].isoformat(),
                    "size": m["size"],
                    "digest": m["digest"],
                    "details": details(m["entry"]),
                }
            )
        self.send_json(200, {"models": models})

    def ps(self):
        """server/routes.go PsHandler: api.ProcessModelResponse fields only, longest time left first."""
        models = []
        for r in sorted(self.sched.ps(), key=lambda r: r.expires, reverse=True):
            remaining = r.expires - time.monotonic()
            expires = (
                datetime(2318, 1, 1, tzinfo=UTC)
                if remaining == float("inf")
                else datetime.now(UTC) + timedelta(seconds=max(0, remaining))
            )
            models.append(
                {
                    "name": r.name,
                    "model": r.name,
                    "size": r.size,
                    "digest": r.model["digest"],
                    "details": details(r.model["entry"]),
                    "expires_at": expires.isoformat(),
                    "size_vram": r.size_vram,
                    "context_length": r.num_ctx,
                }
            )
        self.send_json(200, {"models": models})

    def standin_ps(self):
        """Not Ollama's: who holds what, for tests and the sandbox. The instance, its GPUs, the OLLAMA_* and
        CUDA_VISIBLE_DEVICES environment the process really got (so tests can check the unit delivered it),
        the stand-in's knobs in effect, and per loaded model its GPUs, slots (the parallel it really got),
        context and requests in a slot or waiting for one."""
        with self.sched.lock:
            models = [
                {
                    "name": r.name,
                    "gpus": r.gpus,
                    "slots": r.parallel,
                    "context_length": r.num_ctx,
                    "active": r.active,
                    "waiting": r.waiting,
                }
                for r in self.sched.runners.values()
            ]
        self.send_json(
            200,
            {
                "instance": f"{socket.gethostname()}:{self.cfg.port}",
                "gpus": [g["uuid"] for g in self.cfg.gpus],
                "env": {k: v for k, v in os.environ.items() if k.startswith("OLLAMA_") or k == "CUDA_VISIBLE_DEVICES"},
                "knobs_file": self.cfg.knobs_file,
                "knobs": self.cfg.knobs,
                "models": models,
            },
        )

    def stats(self):
        """Not Ollama's: queue and slot counts, so tests can wait on state instead of sleeping. pending: requests
        in the scheduler's queue (OLLAMA_MAX_QUEUE bounds it), loading: the model being loaded, active and
        waiting: per loaded model, requests in a slot and waiting for one (no bound)."""
        with self.sched.lock:
            self.send_json(
                200,
                {
                    "pending": len(self.sched.pending),
                    "loading": self.sched.loading,
                    "num_parallel": self.cfg.num_parallel,
                    "max_queue": self.cfg.max_queue,
                    "active": {n: r.active for n, r in self.sched.runners.items()},
                    "waiting": {n: r.waiting for n, r in self.sched.runners.items()},
                },
            )

    def v1_models(self):
        self.send_json(
            200,
            {
                "object": "list",
                "data": [{"id": n, "object": "model", "created": 0, "owned_by": "library"} for n in self.store.names()],
            },
        )

    def v1_model(self, name: str):
        """GET /v1/models/{model}: the show handler behind middleware/openai.go RetrieveMiddleware, answered as
        openai.ToModel (owned_by = the name's namespace) or openai.NewError."""
        m = self.store.get(name)
        if not m:
            error = {"message": f"model '{name}' not found", "type": "not_found_error", "param": None, "code": None}
            return self.send_json(404, {"error": error})
        parts = m["name"].split("/")
        owner = parts[-2] if len(parts) > 1 else "library"
        created = int(m["modified"].timestamp())
        self.send_json(200, {"id": name, "object": "model", "created": created, "owned_by": owner})

    def show(self, data):
        name = data.get("model") or data.get("name") or ""
        m = self.store.get(name)
        if not m:
            return self.error(404, f"model '{name}' not found")
        entry = m["entry"]
        self.send_json(
            200,
            {
                "license": "",
                "modelfile": f"FROM {name}\n",
                "parameters": "",
                "template": "{{ .Prompt }}",
                "details": details(entry),
                "model_info": entry.get("model_info", {}),
                "capabilities": entry.get("capabilities", ["completion"]),
                "modified_at": m["modified"].isoformat(),
            },
        )

    def pull(self, data):
        """server/routes.go PullHandler: PullModel's progress as NDJSON (its error as a last line once the stream
        has begun), or with "stream": false only the outcome: {"status":"success"} or 500 {"error"}."""
        raw = data.get("model") or data.get("name") or ""
        if not raw.strip():
            return self.error(400, "invalid model name")  # parseNormalizePullModelRef, errtypes
        stream = data.get("stream", True)
        if stream:
            self.start_stream("application/x-ndjson")

        def emit(event):
            if stream:
                self.chunk(dumps(event).encode() + b"\n")

        try:
            pull_model(self.cfg, self.store, raw, bool(data.get("insecure")), emit)
        except PullError as exc:
            log("WARN", "pull failed", model=normalise(raw), error=str(exc))
            if not stream:
                return self.error(500, str(exc))
            emit({"error": str(exc)})
            return self.end_stream()
        if stream:
            self.end_stream()
        else:
            self.send_json(200, {"status": "success"})

    def send_empty(self, status: int):
        """What gin sends when a handler writes nothing: the status, no body."""
        self.send_response(status)
        self.send_header("Content-Length", "0")
        self._identity_headers()
        self.end_headers()

    def copy(self, data):
        """server/routes.go CopyHandler: 400 for a name that is not one, 404 `model "x" not found`, else 200
        with no body."""
        source, dest = data.get("source") or "", data.get("destination") or ""
        if not source.strip():
            return self.error(400, f"source {dumps(source)} is invalid")
        if not dest.strip():
            return self.error(400, f"destination {dumps(dest)} is invalid")
        if not self.store.copy(source, dest):
            return self.error(404, f"model {dumps(source)} not found")
        self.send_empty(200)

    def unsupported(self, data):
        self.error(400, f"{self.path} is not simulated by the Ollama stand-in")

    # --- generation
    def _model(self, data) -> dict | None:
        name = data.get("model") or data.get("name") or ""
        if not name:
            self.error(400, "model is required")
            return None
        m = self.store.get(name)
        if m is None:
            self.error(404, f'model "{name}" not found, try pulling it first')
        return m

    def _keep_alive(self, data) -> float | None:
        if "keep_alive" not in data:
            return None
        value = data["keep_alive"]
        return (
            parse_duration(str(value), self.cfg.keep_alive)
            if not isinstance(value, (int, float))
            else (float("inf") if value < 0 else float(value))
        )

    def _generate(self, data, text_of, emit_token, emit_done, content_type, stream_default=True):
        """Shared by /api/generate, /api/chat and the OpenAI routes."""
        m = self._model(data)
        if m is None:
            return
        prompt = text_of(data)
        keep_alive = self._keep_alive(data)
        started = time.monotonic()
        # server/routes.go GenerateHandler/ChatHandler: an empty prompt with keep_alive 0 expires the runner
        # (server/sched.go expireRunner) without scheduling, so a model not loaded is not loaded first; this
        # comes before the capability check, so it unloads an embedding model too
        if prompt is None and keep_alive == 0:
            self.sched.expire(m["name"])
            return self.send_json(200, emit_done(m["name"], "", "unload", 0, started, 0, final=True))
        if "embedding" in m["entry"].get("capabilities", []) and "completion" not in m["entry"]["capabilities"]:
            return self.error(400, f'"{m["name"]}" does not support generate')
        options = data.get("options") or {}
        if problem := self.option_error(options):
            return self.error(500, problem)  # scheduleRunner's error, answered by handleScheduleError
        try:
            runner, load = self.sched.acquire(m, options, keep_alive)
        except Busy as exc:
            return self.error(503, str(exc))
        except LoadFailed as exc:
            return self.error(500, str(exc))
        try:
            if prompt is None:  # an empty request only loads
                return self.send_json(200, emit_done(m["name"], "", "load", 0, started, load, final=True))
            n = int(options.get("num_predict") or data.get("max_tokens") or self.cfg.tokens)
            n = self.cfg.tokens if n < 0 else n
            seed = int(hashlib.sha256(prompt.encode()).hexdigest()[:6], 16)
            tokens = [WORDS[(seed + i) % len(WORDS)] + " " for i in range(n)]
            stream = data.get("stream", stream_default)
            # "length" when the caller's num_predict cut the answer; else a simulated end of text
            reason = "length" if options.get("num_predict") or data.get("max_tokens") else "stop"
            time.sleep(self.cfg.ttft)
            if not stream:
                for _ in tokens[1:]:
                    time.sleep(1 / self.cfg.tps)
                return self.send_json(
                    200, emit_done(m["name"], "".join(tokens), reason, len(tokens), started, load, final=True)
                )
            self.start_stream(content_type)
            for i, token in enumerate(tokens):
                if i:
                    time.sleep(1 / self.cfg.tps)
                self.chunk(emit_token(m["name"], token))
            self.chunk(emit_done(m["name"], "", reason, len(tokens), started, load, final=False))
            self.end_stream()
        except (BrokenPipeError, ConnectionResetError):
            log("INFO", "client went away, generation stopped", model=m["name"])
        finally:
            self.sched.release(runner)

    def _done_fields(self, reason, count, started, load):
        total = int((time.monotonic() - started) * 1e9)
        return {
            "done": True,
            "done_reason": reason,
            "total_duration": total,
            "load_duration": int(load * 1e9),
            "prompt_eval_count": 8,
            "prompt_eval_duration": int(self.cfg.ttft * 1e9),
            "eval_count": count,
            "eval_duration": int(count / self.cfg.tps * 1e9),
        }

    def generate(self, data):
        def text_of(d):
            return d.get("prompt") or None

        def token(model, t):
            return dumps({"model": model, "created_at": now_iso(), "response": t, "done": False}).encode() + b"\n"

        def done(model, text, reason, count, started, load, final):
            body = {
                "model": model,
                "created_at": now_iso(),
                "response": text,
                **self._done_fields(reason, count, started, load),
            }
            return body if final else dumps(body).encode() + b"\n"

        self._generate(data, text_of, token, done, "application/x-ndjson")

    def chat(self, data):
        def text_of(d):
            messages = d.get("messages") or []
            return " ".join(str(m.get("content", "")) for m in messages) or None

        def token(model, t):
            return (
                dumps(
                    {
                        "model": model,
                        "created_at": now_iso(),
                        "message": {"role": "assistant", "content": t},
                        "done": False,
                    }
                ).encode()
                + b"\n"
            )

        def done(model, text, reason, count, started, load, final):
            body = {
                "model": model,
                "created_at": now_iso(),
                "message": {"role": "assistant", "content": text},
                **self._done_fields(reason, count, started, load),
            }
            return body if final else dumps(body).encode() + b"\n"

        self._generate(data, text_of, token, done, "application/x-ndjson")

    def _openai(self, data, chat: bool):
        # openai/openai.go FromChatRequest / FromCompleteRequest build the native request from OpenAI's fields:
        # a client's keep_alive or options never reach the scheduler there (the gateway leaves /v1 unguarded)
        data = {k: v for k, v in data.items() if k not in ("keep_alive", "options")}
        ident = "chatcmpl-" + hashlib.sha1(str(time.time()).encode()).hexdigest()[:8]
        obj = "chat.completion" if chat else "text_completion"

        def text_of(d):
            if chat:
                return " ".join(str(m.get("content", "")) for m in d.get("messages") or []) or None
            return d.get("prompt") or None

        def choice(t, reason, stream):
            if not chat:
                return {"index": 0, "text": t, "finish_reason": reason}
            key = "delta" if stream else "message"
            return {"index": 0, key: {"role": "assistant", "content": t}, "finish_reason": reason}

        def token(model, t):
            chunk = {
                "id": ident,
                "object": obj + (".chunk" if chat else ""),
                "created": int(time.time()),
                "model": model,
                "system_fingerprint": "fp_ollama",
                "choices": [choice(t, None, True)],
            }
            return b"data: " + dumps(chunk).encode() + b"\n\n"

        def done(model, text, reason, count, started, load, final):
            body = {
                "id": ident,
                "object": obj if final else obj + (".chunk" if chat else ""),
                "created": int(time.time()),
                "model": model,
                "system_fingerprint": "fp_ollama",
                "choices": [choice(text, "stop" if reason in ("load", "unload") else reason, not final)],
            }
            if final:
                body["usage"] = {"prompt_tokens": 8, "completion_tokens": count, "total_tokens": 8 + count}
                return body
            return b"data: " + dumps(body).encode() + b"\n\ndata: [DONE]\n\n"

        self._generate(data, text_of, token, done, "text/event-stream", stream_default=False)

    @staticmethod
    def _from_client(data, **fields) -> dict:
        """What Ollama's compatibility middleware (middleware/openai.go, anthropic.go) hands its handlers: the
        request rebuilt from the compatible API's own fields; a native keep_alive or options never gets
        through. FIELDS: the native fields it fills."""
        return {"model": data.get("model"), "stream": bool(data.get("stream")), **fields}

    def v1_messages(self, data):
        """/v1/messages (anthropic/anthropic.go FromMessagesRequest, ToMessagesResponse): text content only;
        a stream as the Messages API's events, one content block."""
        ident = "msg_" + hashlib.sha1(str(time.time()).encode()).hexdigest()[:24]
        text = " ".join(
            m["content"]
            if isinstance(m.get("content"), str)
            else " ".join(str(b.get("text", "")) for b in m["content"])
            for m in data.get("messages") or []
            if isinstance(m, dict) and m.get("content")
        )
        native = self._from_client(data, prompt=text or None, options={"num_predict": data.get("max_tokens")})

        def event(kind, body):
            return f"event: {kind}\ndata: ".encode() + dumps({"type": kind, **body}).encode() + b"\n\n"

        def message(model, content, reason, count):
            stop = {"stop": "end_turn", "length": "max_tokens"}.get(reason, "end_turn")
            return {
                "id": ident, "type": "message", "role": "assistant", "model": model, "content": content,
                "stop_reason": stop, "usage": {"input_tokens": 8, "output_tokens": count},
            }  # fmt: skip

        started_stream = []

        def token(model, t):
            head = b""
            if not started_stream:
                started_stream.append(True)
                head = event("message_start", {"message": {**message(model, [], "", 0), "stop_reason": None}})
                head += event("content_block_start", {"index": 0, "content_block": {"type": "text", "text": ""}})
            return head + event("content_block_delta", {"index": 0, "delta": {"type": "text_delta", "text": t}})

        def done(model, text, reason, count, started, load, final):
            if final:
                return message(model, [{"type": "text", "text": text}], reason, count)
            stop = message(model, [], reason, count)["stop_reason"]
            return (
                event("content_block_stop", {"index": 0})
                + event("message_delta", {"delta": {"stop_reason": stop}, "usage": {"output_tokens": count}})
                + event("message_stop", {})
            )

        self._generate(native, lambda d: d["prompt"], token, done, "text/event-stream", stream_default=False)

    def v1_responses(self, data):
        """/v1/responses (openai/responses.go FromResponsesRequest, ToResponse): text input only; a stream as
        the Responses API's events."""
        ident = "resp_" + hashlib.sha1(str(time.time()).encode()).hexdigest()[:24]
        raw = data.get("input")
        text = raw if isinstance(raw, str) else " ".join(
            str(c.get("text", "")) if isinstance(c, dict) else str(c)
            for item in raw or [] if isinstance(item, dict)
            for c in (item.get("content") if isinstance(item.get("content"), list) else [{"text": item.get("content")}])
        )  # fmt: skip
        native = self._from_client(data, prompt=text or None, options={"num_predict": data.get("max_output_tokens")})

        def response(model, text, status, count):
            output = [{
                "type": "message", "id": "msg_" + ident[5:], "status": "completed", "role": "assistant",
                "content": [{"type": "output_text", "text": text, "annotations": []}],
            }] if status == "completed" else []  # fmt: skip
            return {
                "id": ident, "object": "response", "created_at": int(time.time()), "status": status, "model": model,
                "output": output, "usage": {"input_tokens": 8, "output_tokens": count, "total_tokens": 8 + count},
            }  # fmt: skip

        def event(kind, body):
            return f"event: {kind}\ndata: ".encode() + dumps({"type": kind, **body}).encode() + b"\n\n"

        started_stream = []

        def token(model, t):
            head = b""
            if not started_stream:
                started_stream.append(True)
                head = event("response.created", {"response": response(model, "", "in_progress", 0)})
            return head + event("response.output_text.delta", {"output_index": 0, "content_index": 0, "delta": t})

        def done(model, text, reason, count, started, load, final):
            if final:
                return response(model, text, "completed", count)
            return event("response.completed", {"response": response(model, text, "completed", count)})

        self._generate(native, lambda d: d["prompt"], token, done, "text/event-stream", stream_default=False)

    def v1_transcriptions(self, form):
        """/v1/audio/transcriptions (middleware/openai.go TranscriptionMiddleware, TranscriptionWriter): a model
        and an audio file as a form; {"text": ...} (response_format json, the default; others not simulated)."""
        if not form.get("model"):
            return self.error(400, "model is required")
        if not form.get("file"):
            return self.error(400, "file is required: http: no such file")
        native = self._from_client({"model": form["model"].decode()}, prompt=f"audio of {len(form['file'])} bytes")

        def done(model, text, reason, count, started, load, final):
            return {"text": text}

        self._generate(native, lambda d: d["prompt"], None, done, "application/json", stream_default=False)

    def v1_chat(self, data):
        self._openai(data, chat=True)

    def v1_completions(self, data):
        self._openai(data, chat=False)

    def _embed(self, data, inputs, answer):
        m = self._model(data)
        if m is None:
            return
        info = m["entry"].get("model_info", {})
        dims = int(info.get(f"{info.get('general.architecture')}.embedding_length", 768))
        options = data.get("options") or {}
        if problem := self.option_error(options):
            return self.error(500, problem)
        started = time.monotonic()
        try:
            runner, load = self.sched.acquire(m, options, self._keep_alive(data))
        except Busy as exc:
            return self.error(503, str(exc))
        except LoadFailed as exc:
            return self.error(500, str(exc))
        try:
            time.sleep(self.cfg.ttft)
            vectors = [embedding(t, dims) for t in inputs]
            self.send_json(200, answer(m["name"], vectors, started, load))
        finally:
            self.sched.release(runner)

    def embed(self, data):
        raw = data.get("input", "")
        inputs = raw if isinstance(raw, list) else [raw]
        self._embed(
            data,
            inputs,
            lambda model, vecs, started, load: {
                "model": model,
                "embeddings": vecs,
                "total_duration": int((time.monotonic() - started) * 1e9),
                "load_duration": int(load * 1e9),
                "prompt_eval_count": sum(len(str(i).split()) for i in inputs),
            },
        )

    def embeddings(self, data):
        self._embed(data, [data.get("prompt", "")], lambda model, vecs, started, load: {"embedding": vecs[0]})

    def v1_embeddings(self, data):
        raw = data.get("input", "")
        inputs = raw if isinstance(raw, list) else [raw]
        self._embed(
            data,
            inputs,
            lambda model, vecs, started, load: {
                "object": "list",
                "model": model,
                "data": [{"object": "embedding", "embedding": v, "index": i} for i, v in enumerate(vecs)],
                "usage": {"prompt_tokens": 8, "total_tokens": 8},
            },
        )


def serve(cfg: Config) -> None:
    store = Store(cfg.models)
    cfg.models.mkdir(parents=True, exist_ok=True)
    handler = type("BoundHandler", (Handler,), {"cfg": cfg, "store": store, "sched": Scheduler(cfg, store)})

    class Server(ThreadingHTTPServer):
        daemon_threads = True
        request_queue_size = 1024
        address_family = socket.AF_INET6 if ":" in cfg.host else socket.AF_INET

        def server_bind(self):
            # HTTPServer.server_bind resolves its own address (getfqdn): seconds without DNS. Ollama doesn't.
            socketserver.TCPServer.server_bind(self)
            self.server_name, self.server_port = cfg.host, cfg.port

    httpd = Server((cfg.host, cfg.port), handler)
    log("INFO", f"Listening on {cfg.host}:{cfg.port} (version {VERSION})")
    log(
        "INFO",
        "inference compute",
        gpus=",".join(g["uuid"] for g in cfg.gpus) or "cpu",
        num_parallel=cfg.num_parallel,
        max_queue=cfg.max_queue,
        context_length=cfg.context_length,
    )
    httpd.serve_forever()


# ----------------------------------------------------------------- CLI
def client(path: str, body: dict | None = None, method: str | None = None):
    host, port = parse_host(os.environ.get("OLLAMA_HOST"))
    host = "127.0.0.1" if host in ("0.0.0.0", "") else host
    url = f"http://{'[' + host + ']' if ':' in host else host}:{port}{path}"
    data = dumps(body).encode() if body is not None else None
    req = urlrequest.Request(
        url, data=data, method=method or ("POST" if data else "GET"), headers={"Content-Type": "application/json"}
    )
    return urlrequest.urlopen(req, timeout=600)


def human(size: float) -> str:
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if size < 1000 or unit == "TB":
            return f"{size:.1f} {unit}" if unit != "B" else f"{int(size)} B"
        size /= 1000
    return ""


def cli(argv: list[str]) -> int:
    if not argv or argv[0] in ("-h", "--help", "help"):
        print(
            "Usage:\n  ollama [flags]\n  ollama [command]\n\nAvailable Commands:\n"
            "  serve  Start ollama\n  pull   Pull a model from a registry (--insecure: http)\n"
            "  list   List models\n  ps     List running models\n\nFlags:\n  -v, --version"
        )
        return 0
    cmd, args = argv[0], argv[1:]
    try:
        if cmd in ("-v", "--version"):
            try:
                server = json.load(client("/api/version"))["version"]
                print(f"ollama version is {server}")
                if server != VERSION:
                    print(f"Warning: client version is {VERSION}")
            except (urlerror.URLError, OSError):
                print("Warning: could not connect to a running Ollama instance")
                print(f"Warning: client version is {VERSION}")
            return 0
        if cmd == "serve":
            serve(Config())
            return 0
        if cmd in ("list", "ls"):
            models = json.load(client("/api/tags"))["models"]
            print(f"{'NAME':<32}{'ID':<16}{'SIZE':<10}MODIFIED")
            for m in models:
                print(f"{m['name']:<32}{m['digest'][:12]:<16}{human(m['size']):<10}recently")
            return 0
        if cmd == "ps":
            models = json.load(client("/api/ps"))["models"]
            print(f"{'NAME':<28}{'ID':<16}{'SIZE':<10}{'PROCESSOR':<18}{'CONTEXT':<10}UNTIL")
            for m in models:
                share = round(100 * m["size_vram"] / m["size"]) if m["size"] else 0
                proc = "100% GPU" if share == 100 else "100% CPU" if share == 0 else f"{100 - share}%/{share}% CPU/GPU"
                print(
                    f"{m['name']:<28}{m['digest'][:12]:<16}{human(m['size']):<10}{proc:<18}"
                    f"{m['context_length']:<10}{m['expires_at']}"
                )
            return 0
        if cmd == "pull":
            names = [a for a in args if a != "--insecure"]
            if len(names) != 1:
                print(f"Error: accepts 1 arg(s), received {len(names)}", file=sys.stderr)
                return 1
            body = {"model": names[0], "insecure": "--insecure" in args, "stream": True}
            with client("/api/pull", body) as resp:
                for line in resp:
                    event = json.loads(line)
                    if "error" in event:
                        print(f"Error: {event['error']}", file=sys.stderr)
                        return 1
                    if "total" in event:
                        print(f"{event['status']}: {human(event['completed'])}/{human(event['total'])}")
                    else:
                        print(event["status"])
            return 0
    except urlerror.HTTPError as exc:
        print(f"Error: {json.load(exc).get('error', exc.reason)}", file=sys.stderr)
        return 1
    except (urlerror.URLError, ConnectionError) as exc:
        print(f"Error: could not connect to ollama server, run 'ollama serve' to start it ({exc})", file=sys.stderr)
        return 1
    print(
        f'Error: unknown command "{cmd}" for "ollama" (the stand-in simulates serve, pull, list, ps)', file=sys.stderr
    )
    return 1


if __name__ == "__main__":
    sys.exit(cli(sys.argv[1:]))
