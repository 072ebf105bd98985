#!/usr/bin/env python3
"""Package the Ollama stand-in as a release archive with the official layout.

  build_archive.py --version 0.33.0 --out DIR [--arch amd64]

Writes DIR/ollama-linux-<arch>.tgz (bin/ollama, lib/ollama/standin/...) and
DIR/sha256sum.txt as a GitHub release publishes them, so roles install it through
the same offline-archive path (ollama_archive_src) operators use. The archive is
byte-for-byte reproducible: same inputs, same checksum, so reinstalling is a no-op.
"""

import argparse
import gzip
import hashlib
import io
import tarfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
LAUNCHER = """#!/bin/sh
# Ollama stand-in (tests and sandbox only): finds lib/ollama beside bin/ as the real binary does.
here=$(dirname "$(readlink -f "$0")")
exec python3 "$here/../lib/ollama/standin/ollama_standin.py" "$@"
"""


def add(tar: tarfile.TarFile, name: str, data: bytes, mode: int) -> None:
    info = tarfile.TarInfo(name)
    info.size, info.mode, info.mtime = len(data), mode, 0
    info.uname = info.gname = "root"
    tar.addfile(info, io.BytesIO(data))


def add_dir(tar: tarfile.TarFile, name: str) -> None:
    info = tarfile.TarInfo(name)
    info.type, info.mode, info.mtime = tarfile.DIRTYPE, 0o755, 0
    info.uname = info.gname = "root"
    tar.addfile(info)


CORE = HERE.parents[1] / "plugins" / "module_utils"
CORE_PACKAGE = "ansible_collections/ollama/fleet/plugins/module_utils"
CORE_DIRS = [f"lib/ollama/standin/{CORE_PACKAGE.rsplit('/', n)[0]}" for n in range(4, -1, -1)]


def build(version: str, out: Path, arch: str = "amd64") -> Path:
    out.mkdir(parents=True, exist_ok=True)
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.GNU_FORMAT) as tar:
        for d in ("bin", "lib", "lib/ollama", "lib/ollama/standin", *CORE_DIRS):
            add_dir(tar, d)
        add(tar, "bin/ollama", LAUNCHER.encode(), 0o755)
        # the server's modules (its version written into standin_config.py) and the catalogue; not this script
        for path in sorted([*HERE.glob("*.py"), HERE / "catalogue.json"]):
            if path.name != Path(__file__).name:
                data = path.read_text().replace("@VERSION@", version) if path.name == "standin_config.py" else None
                add(tar, f"lib/ollama/standin/{path.name}", data.encode() if data else path.read_bytes(), 0o644)
        # the toolkit's name rule, under the package name the stand-in imports it by
        add(tar, f"{CORE_DIRS[-1]}/model_names.py", (CORE / "model_names.py").read_bytes(), 0o644)
    archive = out / f"ollama-linux-{arch}.tgz"
    with open(archive, "wb") as f, gzip.GzipFile(fileobj=f, mode="wb", mtime=0, filename="") as gz:
        gz.write(raw.getvalue())
    digest = hashlib.sha256(archive.read_bytes()).hexdigest()
    (out / "sha256sum.txt").write_text(f"{digest}  ./{archive.name}\n")
    return archive


if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--version", required=True)
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--arch", default="amd64", choices=["amd64", "arm64"])
    a = p.parse_args()
    print(build(a.version, a.out, a.arch))
