"""Model names, the catalogue's images and the store on disk, as Ollama keeps it (types/model/name.go,
manifest/paths.go, manifest/manifest.go, server/images.go)."""

from __future__ import annotations

import functools
import hashlib
import json
import re
import threading
from datetime import UTC, datetime
from pathlib import Path

# Ollama's name rule as the toolkit writes it (the archive carries the core under the same package name)
from ansible_collections.ollama.fleet.plugins.module_utils import model_names
from standin_config import HERE, MIB

# ----------------------------------------------------------------- model names, images and the store
DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_CONFIG = "application/vnd.docker.container.image.v1+json"
OLLAMA_MODEL = "application/vnd.ollama.image.model"
DEFAULT_HOST = "registry.ollama.ai"
# The weights blob of every catalogue model: this many pseudo-random bytes, so byte counts in tests mean
# something while a registry holding the whole catalogue stays small.
PLACEHOLDER_BYTES = MIB
CHUNK = 16 << 10


def name_parts(name: str) -> model_names.ModelName:
    """host, namespace, model, tag of a name as Ollama reads it, in the case written (model_names.parse);
    model_names.InvalidModelName where Ollama answers "invalid model name"."""
    return model_names.parse(name)


def valid_name(name: str) -> bool:
    """Whether Ollama takes NAME as a model's name (Name.IsValid after modelref.ParseRef)."""
    try:
        model_names.parse(name)
    except model_names.InvalidModelName:
        return False
    return True


def normalise(name: str) -> str:
    """The name Ollama shows for a model (types/model/name.go DisplayShortest): registry.ollama.ai/library/x,
    library/x and https://registry.ollama.ai/library/x are x:latest; another host keeps host/namespace/."""
    return model_names.display(name)


@functools.cache
def load_catalogue() -> dict[str, dict]:
    """catalogue.json by short name (model:tag)."""
    raw = json.loads((HERE / "catalogue.json").read_text())
    return {normalise(k).lower(): v for k, v in raw.items() if not k.startswith("_")}


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
    short = normalise(name).lower()
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
        """Where NAME's manifest is, each part spelled as the store already has it ignoring case, else as
        written (server/routes.go getExistingName): Qwen3:0.6B finds qwen3/0.6b, and a first pull of Qwen3:0.6B
        keeps its case."""
        path = self.root / "manifests"
        for part in name_parts(name):
            found = [p for p in path.iterdir() if p.name.lower() == part.lower()] if path.is_dir() else []
            path = found[0] if found else path / part
        return path

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
        namespace it was pulled from. digest: sha256 of the manifest file (manifest.ParseNamedManifest); None for
        a name Ollama finds no model by (an invalid one included: server/routes.go answers "not found")."""
        try:
            path = self.manifest_path(name)
            data = path.read_bytes()
            manifest = json.loads(data)
        except (OSError, ValueError):
            return None
        host, namespace, model, tag = path.relative_to(self.root / "manifests").parts
        return {
            "name": normalise(f"{host}/{namespace}/{model}:{tag}"),
            "manifest": manifest,
            "digest": hashlib.sha256(data).hexdigest(),
            "modified": datetime.fromtimestamp(path.stat().st_mtime, UTC),
            # Ollama's Manifest.Size adds the config's few hundred bytes; the catalogue's sizes are the library's
            # totals, so the layers alone carry them here.
            "size": sum(layer["size"] for layer in manifest["layers"]),
            "entry": self.catalogue.get(f"{model}:{tag}".lower(), {}),
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


def details(entry: dict) -> dict:
    return {
        "parent_model": "",
        "format": "gguf",
        "family": entry.get("family", ""),
        "families": [entry.get("family", "")],
        "parameter_size": entry.get("parameter_size", ""),
        "quantization_level": entry.get("quantization_level", ""),
    }
