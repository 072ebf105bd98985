#!/usr/bin/python
# Apache-2.0 (see the project's README)

DOCUMENTATION = r"""
---
module: ollama_registry_load
short_description: Load Ollama models into a local OCI-distribution registry
description:
  - Copies Ollama models, manifest and blobs, from an upstream registry or from a copied Ollama model store
    into a local registry (CNCF distribution 2.8, Debian's C(docker-registry)), so that the GPU hosts of an
    air-gapped fleet can C(ollama pull) them from there.
  - The manifest is pushed byte for byte, so its digest is the same in the source, the registry and Ollama.
  - Idempotent. A model whose tag in O(registry) already has the source manifest's digest is skipped
    without fetching anything. Otherwise each blob that O(registry) lacks is read from O(source), checked
    against its digest, and uploaded. The manifest is put last.
  - Every blob of a model is verified before the first upload, so a corrupt or missing blob leaves nothing
    of that model in O(registry). Blobs from a URL source are held in temporary files until then, so the
    controller needs free space in C(TMPDIR) for the largest model's missing blobs. Blobs from a directory
    source are hashed where they lie and uploaded from the same file. The registry checks each upload
    against its digest again.
  - Runs where it is called; delegate it to the controller. Talks plain HTTP(S) without authentication.
  - Supports check mode. It then sends only GET and HEAD requests and reports what it would push.
options:
  registry:
    description: Base URL of the destination registry, such as C(http://10.213.0.23:5000).
    type: str
    required: true
  source:
    description:
      - Where the models come from. Either the base URL of a registry to mirror, such as
        C(https://registry.ollama.ai), or a local directory laid out like an Ollama model store
        (C(OLLAMA_MODELS)), with C(manifests/<host>/<namespace>/<model>/<tag>) and C(blobs/sha256-<hex>).
      - For a URL the host part of each model name is ignored; for a directory it selects the manifest.
    type: str
    required: true
  models:
    description:
      - Model names as Ollama clients write them. C(llama3.1:8b) is host C(registry.ollama.ai), namespace
        C(library), model C(llama3.1), tag C(8b); C(ns/model:tag) and C(host[:port]/ns/model:tag) name the
        other parts. Without a tag the tag is C(latest). Names are lower-cased.
      - Each is stored in O(registry) as repository C(<namespace>/<model>) at the same tag.
    type: list
    elements: str
    required: true
  ca_file:
    description: CA bundle that verifies HTTPS certificates of O(source) and O(registry). Default, the system's.
    type: path
  timeout:
    description: Seconds each request may wait for the server.
    type: int
    default: 60
attributes:
  check_mode:
    support: full
notes:
  - Written against Ollama's C(types/model/name.go) (name parsing), C(manifest/manifest.go) and
    C(manifest/paths.go) (store layout, manifest digest) and C(server/images.go) (the Accept header of a pull).
author: ollama-fleet developers
"""

EXAMPLES = r"""
- name: Mirror models from the Ollama registry into the site registry
  ollama_registry_load:
    registry: "http://10.213.0.23:5000"
    source: https://registry.ollama.ai
    models: [llama3.1:8b, qwen2.5:14b]
  delegate_to: localhost
  run_once: true

- name: Load models from a store copied off a machine that ran ollama pull
  ollama_registry_load:
    registry: "https://reg.example:5000"
    ca_file: /etc/ssl/site-ca.pem
    source: /srv/ollama-store
    models: [llama3.1:8b]
  delegate_to: localhost
  run_once: true
"""

RETURN = r"""
models:
  description: One entry per model, in the order of O(models).
  returned: always
  type: list
  elements: dict
  contains:
    name:
      description: The model name as given in O(models).
      type: str
    repository:
      description: Its repository in O(registry), C(<namespace>/<model>).
      type: str
    tag:
      description: Its tag in O(registry).
      type: str
    digest:
      description: The manifest's digest, sha256 of its bytes in O(source); the same in O(registry).
      type: str
    pushed:
      description: Whether the model was pushed (in check mode, would be); false when O(registry) had it.
      type: bool
    blobs_fetched:
      description: Blobs read from O(source); each missing blob once, none in check mode.
      type: int
    bytes_fetched:
      description: Bytes of blobs read from O(source).
      type: int
    blobs_missing:
      description: Blobs that O(registry) lacked, which were pushed (in check mode, would be).
      type: int
    bytes_missing:
      description: Their size, as the manifest gives it.
      type: int
    blobs_present:
      description: Blobs that O(registry) already held; all of them when the manifest was there.
      type: int
  sample:
    - name: llama3.1:8b
      repository: library/llama3.1
      tag: 8b
      digest: "sha256:46e0c10c039e019119339687c3c1757cc81b9da49709a3b3924863ba87ca666e"
      pushed: true
      blobs_fetched: 3
      bytes_fetched: 4920753753
      blobs_missing: 3
      bytes_missing: 4920753753
      blobs_present: 2
"""

import hashlib
import http.client
import json
import os
import re
import ssl
import tempfile
import urllib.error
import urllib.parse
import urllib.request

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.ollama.fleet.plugins.module_utils import model_names

DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
MANIFEST_ACCEPT = f"{DOCKER_MANIFEST}, {OCI_MANIFEST}"
DIGEST = re.compile(r"^sha256:[0-9a-f]{64}$")
CHUNK = 1 << 20


class LoadError(Exception):
    """A model could not be loaded; the message says which request or file, and what answered."""


def parse_name(name):
    """Split an Ollama model name as Ollama does (model_names.parse): host/namespace/model:tag, defaults filled in.

    Returns the parts lower-cased, and as written (a store written by a recent Ollama keeps the case).
    """
    try:
        given = model_names.parse(name)._asdict()
    except model_names.InvalidModelName as exc:
        raise LoadError(str(exc)) from None
    return {part: value.lower() for part, value in given.items()}, given


def _error_body(response):
    try:
        body = response.read(4096).decode("utf-8", "replace").strip()
    except (OSError, http.client.HTTPException):
        body = ""
    return body or "(empty body)"


class Endpoint:
    """One registry (the source or the destination), spoken to with urllib."""

    def __init__(self, role, base, context, timeout):
        self.role = role
        self.base = base.rstrip("/")
        self.timeout = timeout
        self.opener = urllib.request.build_opener(urllib.request.HTTPSHandler(context=context))

    def url(self, path):
        return urllib.parse.urljoin(self.base + "/", path.lstrip("/"))

    def open(self, method, url, expect, headers=None, data=None):
        """Send one request; return the response when its status is in expect, else raise LoadError."""
        request = urllib.request.Request(url, data=data, headers=headers or {}, method=method)
        try:
            response = self.opener.open(request, timeout=self.timeout)
        except urllib.error.HTTPError as exc:
            response = exc
        except (urllib.error.URLError, OSError, http.client.HTTPException, ValueError) as exc:
            reason = getattr(exc, "reason", exc)
            raise LoadError(f"{self.role} {self.base}: {method} {url} failed: {reason}") from None
        status = response.code if isinstance(response, urllib.error.HTTPError) else response.status
        if status not in expect:
            body = _error_body(response)
            response.close()
            raise LoadError(f"{self.role} {self.base}: {method} {url} answered HTTP {status}: {body}")
        return status, response

    def manifest_digest(self, repository, tag):
        """The digest the registry holds at repository:tag, or None."""
        url = self.url(f"/v2/{repository}/manifests/{tag}")
        status, response = self.open("HEAD", url, (200, 404), {"Accept": MANIFEST_ACCEPT})
        with response:
            return response.headers.get("Docker-Content-Digest") if status == 200 else None

    def has_blob(self, repository, digest):
        status, response = self.open("HEAD", self.url(f"/v2/{repository}/blobs/{digest}"), (200, 404))
        response.close()
        return status == 200

    def push_blob(self, repository, digest, path, size):
        _, response = self.open("POST", self.url(f"/v2/{repository}/blobs/uploads/"), (202,), data=b"")
        with response:
            location = response.headers.get("Location")
        if not location:
            raise LoadError(f"{self.role} {self.base}: POST /v2/{repository}/blobs/uploads/ gave no Location")
        url = urllib.parse.urljoin(self.base + "/", location)
        url += ("&" if urllib.parse.urlsplit(url).query else "?") + "digest=" + urllib.parse.quote(digest)
        headers = {"Content-Length": str(size), "Content-Type": "application/octet-stream"}
        try:
            blob = open(path, "rb")
        except OSError as exc:
            raise LoadError(f"cannot read {path}: {exc.strerror}") from None
        with blob:  # urllib streams the file in blocks
            self.open("PUT", url, (201,), headers, blob)[1].close()

    def put_manifest(self, repository, tag, media_type, data):
        url = self.url(f"/v2/{repository}/manifests/{tag}")
        _, response = self.open("PUT", url, (201,), {"Content-Type": media_type}, data)
        with response:
            return response.headers.get("Docker-Content-Digest")


def _copy_hashing(reader, writer):
    """Copy reader to writer (None: only read) in CHUNK blocks; return (sha256 digest, bytes)."""
    sha, size = hashlib.sha256(), 0
    while block := reader.read(CHUNK):
        sha.update(block)
        size += len(block)
        if writer is not None:
            writer.write(block)
    return "sha256:" + sha.hexdigest(), size


class UrlSource:
    """A registry to mirror: manifests and blobs over the distribution API."""

    def __init__(self, endpoint):
        self.endpoint = endpoint
        self.where = endpoint.base

    def manifest(self, name, parts, given):
        url = self.endpoint.url(f"/v2/{parts['namespace']}/{parts['model']}/manifests/{parts['tag']}")
        status, response = self.endpoint.open("GET", url, (200, 404), {"Accept": MANIFEST_ACCEPT})
        with response:
            if status == 404:
                body = _error_body(response)
                raise LoadError(f"{name} is not in source {self.where}: GET {url} answered HTTP 404: {body}")
            try:
                data = response.read()
            except (OSError, http.client.HTTPException) as exc:
                raise LoadError(f"source {self.where}: reading {url} failed: {exc}") from None
            content_type = response.headers.get("Content-Type", "").split(";")[0].strip()
            return data, content_type or None

    def fetch(self, parts, digest, scratch):
        """Download a blob into scratch; return (path, actual digest, bytes read)."""
        url = self.endpoint.url(f"/v2/{parts['namespace']}/{parts['model']}/blobs/{digest}")
        path = os.path.join(scratch, digest.replace(":", "-"))
        try:
            _, response = self.endpoint.open("GET", url, (200,))
            with response, open(path, "wb") as out:
                actual, size = _copy_hashing(response, out)
        except (OSError, http.client.HTTPException) as exc:
            raise LoadError(f"source {self.where}: copying {url} to {path} failed: {exc}") from None
        return path, actual, size


class DirSource:
    """A copy of an Ollama model store (OLLAMA_MODELS)."""

    def __init__(self, root):
        self.root = root
        self.where = root

    def manifest(self, name, parts, given):
        tried = []
        for p in (parts, given):
            path = os.path.join(self.root, "manifests", p["host"], p["namespace"], p["model"], p["tag"])
            if path in tried:
                continue
            tried.append(path)
            try:
                with open(path, "rb") as f:
                    return f.read(), None
            except FileNotFoundError:
                continue
            except OSError as exc:
                raise LoadError(f"{name}: cannot read the manifest {path}: {exc.strerror}") from None
        raise LoadError(f"{name} is not in source {self.root}: no manifest at {' or '.join(tried)}")

    def fetch(self, parts, digest, scratch):
        """Hash a blob where it lies; return (its path, actual digest, bytes read)."""
        path = os.path.join(self.root, "blobs", digest.replace(":", "-"))
        try:
            with open(path, "rb") as f:
                actual, size = _copy_hashing(f, None)
        except OSError as exc:
            raise LoadError(f"blob {digest} cannot be read from source {self.root}: {path}: {exc.strerror}") from None
        return path, actual, size


def parse_manifest(name, data, content_type):
    """The manifest's media type and its blobs as [(digest, size)], config first, each digest once."""
    try:
        manifest = json.loads(data)
        blobs = [manifest["config"], *manifest["layers"]]
        refs = [(blob["digest"], int(blob.get("size", 0))) for blob in blobs]
    except (ValueError, TypeError, KeyError) as exc:
        raise LoadError(f"{name}: the source manifest is not an image manifest ({exc!r})") from None
    bad = [digest for digest, _ in refs if not isinstance(digest, str) or not DIGEST.match(digest)]
    if bad:
        raise LoadError(f"{name}: the source manifest names blobs that are not sha256 digests: {bad}")
    media_type = manifest.get("mediaType") or content_type or DOCKER_MANIFEST
    return media_type, list(dict.fromkeys(refs))


def load_model(name, source, destination, check_mode):
    """Load one model; return its result entry. Raises LoadError before any upload if a blob is wrong."""
    parts, given = parse_name(name)
    repository, tag = f"{parts['namespace']}/{parts['model']}", parts["tag"]
    data, content_type = source.manifest(name, parts, given)
    digest = "sha256:" + hashlib.sha256(data).hexdigest()
    media_type, blobs = parse_manifest(name, data, content_type)
    result = {
        "name": name,
        "repository": repository,
        "tag": tag,
        "digest": digest,
        "pushed": False,
        "blobs_fetched": 0,
        "bytes_fetched": 0,
        "blobs_missing": 0,
        "bytes_missing": 0,
        "blobs_present": 0,
    }
    if destination.manifest_digest(repository, tag) == digest:
        result["blobs_present"] = len(blobs)  # the registry refuses a manifest whose blobs it lacks
        return result
    missing = [(blob, size) for blob, size in blobs if not destination.has_blob(repository, blob)]
    result.update(
        blobs_present=len(blobs) - len(missing),
        blobs_missing=len(missing),
        bytes_missing=sum(size for _, size in missing),
        pushed=True,
    )
    if check_mode:
        return result
    with tempfile.TemporaryDirectory(prefix="ollama_registry_load.") as scratch:
        verified = []
        for blob, _ in missing:
            path, actual, size = source.fetch(parts, blob, scratch)
            result["blobs_fetched"] += 1
            result["bytes_fetched"] += size
            if actual != blob:
                raise LoadError(
                    f"{name}: blob {blob} from source {source.where} has digest {actual}"
                    f" (expected {blob}); nothing of {name} was pushed to {destination.base}"
                )
            verified.append((blob, path, size))
        for blob, path, size in verified:
            destination.push_blob(repository, blob, path, size)
    pushed = destination.put_manifest(repository, tag, media_type, data)
    if pushed != digest:
        raise LoadError(
            f"{name}: destination {destination.base} stored the manifest {repository}:{tag} as {pushed},"
            f" not as the source digest {digest}"
        )
    return result


def make_source(module, context):
    source = module.params["source"]
    if re.match(r"^https?://", source, re.IGNORECASE):
        return UrlSource(Endpoint("source", source, context, module.params["timeout"]))
    if os.path.isdir(source):
        return DirSource(os.path.abspath(source))
    module.fail_json(msg=f"source {source} is neither an http(s):// URL nor an existing directory")


def main():
    module = AnsibleModule(
        argument_spec={
            "registry": {"type": "str", "required": True},
            "source": {"type": "str", "required": True},
            "models": {"type": "list", "elements": "str", "required": True},
            "ca_file": {"type": "path"},
            "timeout": {"type": "int", "default": 60},
        },
        supports_check_mode=True,
    )
    registry, ca_file = module.params["registry"], module.params["ca_file"]
    if not re.match(r"^https?://", registry, re.IGNORECASE):
        module.fail_json(msg=f"registry {registry} is not an http(s):// URL")
    try:
        context = ssl.create_default_context(cafile=ca_file)
    except (OSError, ssl.SSLError) as exc:
        module.fail_json(msg=f"ca_file {ca_file} cannot be loaded: {exc}")
    source = make_source(module, context)
    destination = Endpoint("destination", registry, context, module.params["timeout"])
    results = []
    for name in module.params["models"]:
        try:
            results.append(load_model(name, source, destination, module.check_mode))
        except LoadError as exc:
            message = str(exc)
            if not message.startswith(name):
                message = f"{name}: {message}"
            module.fail_json(msg=message, changed=any(r["pushed"] for r in results), models=results)
    module.exit_json(changed=any(r["pushed"] for r in results), models=results)


if __name__ == "__main__":
    main()
