#!/usr/bin/env python3
"""A read-only registry that plays registry.ollama.ai for tests: "the internet" on the controller.

It serves the stand-in's catalogue over the registry protocol (distribution's API v2, as Ollama reads it in
server/images.go pullModelManifest and server/download.go) with the bytes of standin_store.catalogue_image,
so a model pulled from it has the digest the stand-in synthesises in process:

  GET/HEAD /v2/                                      200 {}
  GET/HEAD /v2/library/<model>/manifests/<tag|digest>  the manifest, Content-Type and Docker-Content-Digest
  GET/HEAD /v2/library/<model>/blobs/<digest>          the blob
  anything else unknown                              404 {"errors":[{"code":"MANIFEST_UNKNOWN"|"BLOB_UNKNOWN"...}]}

Every request appends one JSON line to the log: {"client", "method", "path", "status", "bytes" (body bytes
sent), "model" ("llama3.1:8b" when the path names one, a blob by the model that holds it)}. blob_bytes()
reads it into bytes per (client, model), so a test can assert that an air-gapped host fetched nothing and
that each model crossed "the internet" once (image_bytes: one copy of its blobs).

  python3 tests/helpers/public_registry.py --listen 10.213.0.1:5001 --log /tmp/internet.jsonl

--corrupt MODEL serves that model's weights with one byte changed (the digest check of a pull must fail).
"""

from __future__ import annotations

import argparse
import json
import re
import socket
import sys
import threading
from collections import defaultdict
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

sys.path[:0] = [
    str(Path(__file__).resolve().parents[1] / "ollama_standin"),
    str(Path(__file__).resolve().parents[2] / "collections"),
]
import standin_store  # noqa: E402  (the stand-in's module, beside this folder, not installed; the core it imports)

PATH = re.compile(r"^/v2/(?P<repo>[a-z0-9._-]+/[a-z0-9._-]+)/(?P<kind>manifests|blobs)/(?P<ref>[^/]+)$")


def images() -> dict[str, tuple[str, bytes, dict[str, bytes]]]:
    """Per catalogue model: its manifest digest, manifest and blobs."""
    found = {}
    for name in standin_store.load_catalogue():
        manifest, blobs = standin_store.catalogue_image(name)
        found[name] = (standin_store.sha256_digest(manifest), manifest, blobs)
    return found


def image_bytes(name: str) -> int:
    """The bytes of one copy of a model's blobs, what one pull of it fetches."""
    return sum(len(b) for b in standin_store.catalogue_image(name)[1].values())


def read_log(path: Path | str) -> list[dict]:
    try:
        text = Path(path).read_text()
    except FileNotFoundError:
        return []
    return [json.loads(line) for line in text.splitlines() if line.strip()]


def blob_bytes(path: Path | str) -> dict[tuple[str, str], int]:
    """Blob body bytes sent per (client, model); manifests (fetched again by every pull) are left out."""
    sent: dict[tuple[str, str], int] = defaultdict(int)
    for entry in read_log(path):
        if "/blobs/" in entry["path"] and entry.get("model"):
            sent[(entry["client"], entry["model"])] += entry["bytes"]
    return dict(sent)


def tables(corrupt: tuple[str, ...]) -> tuple[dict, dict]:
    """Manifests by (repository, tag or digest) and blobs by (repository, digest); CORRUPT models' weights with a
    bit flipped."""
    models, blobs = {}, {}
    for name, (digest, manifest, layers) in images().items():
        model, tag = name.split(":")
        models[(f"library/{model}", tag)] = models[(f"library/{model}", digest)] = (name, digest, manifest)
        for blob_digest, data in layers.items():
            if name in corrupt and len(data) > 1000:  # the weights, not the config
                data = bytes([data[0] ^ 1]) + data[1:]
            blobs[(f"library/{model}", blob_digest)] = (name, data)
    return models, blobs


class Handler(BaseHTTPRequestHandler):
    """The registry API's reads, from the tables on its server (Server.models, .blobs), each logged."""

    protocol_version = "HTTP/1.1"
    server_version = "public-registry"

    def log_message(self, fmt, *args):
        pass  # the JSON log is the record

    def do_HEAD(self):
        self.do_GET()

    def do_GET(self):
        match = PATH.match(self.path.split("?")[0])
        if self.path.split("?")[0] in ("/v2", "/v2/"):
            return self.answer(200, b"{}", "application/json")
        if match is None:
            return self.error(404, "NAME_UNKNOWN", "repository name not known to registry", None)
        repo, kind, ref = match["repo"], match["kind"], match["ref"]
        if kind == "manifests":
            found = self.server.models.get((repo, ref))
            if found is None:
                return self.error(404, "MANIFEST_UNKNOWN", "manifest unknown", {"Tag": ref})
            name, digest, manifest = found
            extra = {"Docker-Content-Digest": digest}
            return self.answer(200, manifest, standin_store.DOCKER_MANIFEST, extra, name)
        found = self.server.blobs.get((repo, ref))
        if found is None:
            return self.error(404, "BLOB_UNKNOWN", "blob unknown to registry", ref)
        name, data = found
        self.answer(200, data, "application/octet-stream", {"Docker-Content-Digest": ref}, name)

    def error(self, status, code, message, detail):
        body = json.dumps({"errors": [{"code": code, "message": message, "detail": detail}]}).encode()
        self.answer(status, body, "application/json; charset=utf-8")

    def answer(self, status, body, content_type, extra=None, model=None):
        sent = 0
        try:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.send_header("Docker-Distribution-Api-Version", "registry/2.0")
            for key, value in (extra or {}).items():
                self.send_header(key, value)
            self.end_headers()
            if self.command != "HEAD":
                view = memoryview(body)
                while sent < len(body):  # counted as it goes: a client that leaves early got only this
                    self.wfile.write(view[sent : sent + 65536])
                    sent = min(len(body), sent + 65536)
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True
        finally:
            entry = {"client": self.client_address[0], "method": self.command, "path": self.path}
            entry |= {"status": status, "bytes": sent, "model": model}
            with self.server.lock, open(self.server.log, "a") as out:
                out.write(json.dumps(entry) + "\n")


def make_server(listen: str, log: Path | str, corrupt: tuple[str, ...] = ()) -> ThreadingHTTPServer:
    """A server bound to HOST:PORT (port 0: any free one); serve_forever() runs it."""
    host, _, port = listen.rpartition(":")

    class Server(ThreadingHTTPServer):
        daemon_threads = True
        address_family = socket.AF_INET6 if ":" in host else socket.AF_INET

    server = Server((host.strip("[]") or "0.0.0.0", int(port)), Handler)
    server.models, server.blobs = tables(corrupt)
    server.log, server.lock = log, threading.Lock()
    return server


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--listen", required=True, help="ADDR:PORT")
    parser.add_argument("--log", required=True, help="JSON lines, one per request, appended")
    parser.add_argument("--corrupt", action="append", default=[], help="serve this model's weights corrupted")
    args = parser.parse_args(argv)
    server = make_server(args.listen, args.log, tuple(standin_store.normalise(m) for m in args.corrupt))
    print(f"serving the catalogue on {args.listen}", flush=True)
    server.serve_forever()
    return 0


if __name__ == "__main__":
    sys.exit(main())
