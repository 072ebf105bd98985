"""Pulls over the registry protocol (server/images.go PullModel, pullModelManifest, makeRequest;
server/download.go downloadBlob)."""

from __future__ import annotations

import errno
import hashlib
import http.client
import io
import json
import os
import socket
import ssl
import time
from urllib import error as urlerror
from urllib import request as urlrequest
from urllib.parse import urlparse

from standin_config import VERSION, Config
from standin_store import (
    CHUNK,
    DEFAULT_HOST,
    DOCKER_MANIFEST,
    Store,
    catalogue_image,
    load_catalogue,
    manifest_digests,
    name_parts,
)


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
        if self.namespace.lower() != "library" or f"{self.model}:{tag}".lower() not in load_catalogue():
            raise PullError("file does not exist")
        return catalogue_image(f"{self.model}:{tag}")[0]

    def blob(self, digest: str):
        for name in load_catalogue():
            blobs = catalogue_image(name)[1] if name.startswith(f"{self.model.lower()}:") else {}
            if digest in blobs:
                return len(blobs[digest]), io.BytesIO(blobs[digest])
        raise PullError("file does not exist")


def pull_source(cfg: Config, name: str, insecure: bool):
    """Where a name is pulled from: types/model/name.go BaseURL (https://<host>, http when the request is
    insecure, server/images.go makeRequest); registry.ollama.ai is OLLAMA_STANDIN_PUBLIC_REGISTRY, else the
    catalogue in process."""
    host, namespace, model, _ = name_parts(name)
    if host.lower() != DEFAULT_HOST:
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
