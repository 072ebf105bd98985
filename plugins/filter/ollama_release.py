"""Which official Ollama release archive to download for a version and architecture, and its checksum."""

import re

from ansible.errors import AnsibleFilterError

DOCUMENTATION = r"""
name: ollama_release_archive
short_description: URL, name, format and checksum source of an official Ollama Linux release archive
description:
  - Linux releases are C(ollama-linux-<arch>.tar.zst) from v0.14.0 on and C(.tgz) before
    (ollama/ollama release v0.14.0; install.sh still falls back to .tgz). C(format=auto) picks by version.
  - The checksum is read from the release's published C(sha256sum.txt) (get_url's C(sha256:<url>) form).
options:
  _input:
    description: Ollama version, with or without the leading v (0.33.0, v0.13.5, 0.33.0-rc2).
    type: str
    required: true
  arch:
    description: Go architecture name.
    type: str
    choices: [amd64, arm64]
    required: true
  base_url:
    description: Where the release's files are; C({version}) is replaced by the version without v.
    type: str
    default: https://github.com/ollama/ollama/releases/download/v{version}
  archive_format:
    type: str
    choices: [auto, tar.zst, tgz]
    default: auto
"""

EXAMPLES = r"""
archive: "{{ '0.33.0' | ollama.fleet.ollama_release_archive(arch='amd64') }}"
# => {"name": "ollama-linux-amd64.tar.zst", "format": "tar.zst", "version": "0.33.0",
#     "url": "https://github.com/ollama/ollama/releases/download/v0.33.0/ollama-linux-amd64.tar.zst",
#     "checksum": "sha256:https://github.com/ollama/ollama/releases/download/v0.33.0/sha256sum.txt"}
"""

RETURN = r"""
_value:
  description: name, format, version, url, checksum.
  type: dict
"""

VERSION = re.compile(r"^v?(\d+)\.(\d+)\.(\d+)(-[0-9A-Za-z.]+)?$")
ZSTD_SINCE = (0, 14, 0)
DEFAULT_BASE = "https://github.com/ollama/ollama/releases/download/v{version}"


def ollama_release_archive(version, arch, base_url=DEFAULT_BASE, archive_format="auto"):
    match = VERSION.match(str(version).strip())
    if not match:
        raise AnsibleFilterError(
            f"field ollama_version: {version!r} is not a release version like 0.33.0 or 0.33.0-rc2"
        )
    if arch not in ("amd64", "arm64"):
        raise AnsibleFilterError(
            f"ollama_release_archive: no Linux release for architecture {arch!r}; valid: amd64, arm64"
        )
    if archive_format not in ("auto", "tar.zst", "tgz"):
        raise AnsibleFilterError(f"field ollama_archive_format: {archive_format!r}; valid: auto, tar.zst, tgz")
    plain = str(version).strip().lstrip("v")
    numbers = tuple(int(n) for n in match.groups()[:3])
    fmt = archive_format if archive_format != "auto" else ("tar.zst" if numbers >= ZSTD_SINCE else "tgz")
    base = base_url.replace("{version}", plain).rstrip("/")
    name = f"ollama-linux-{arch}.{fmt}"
    return {
        "name": name,
        "format": fmt,
        "version": plain,
        "url": f"{base}/{name}",
        "checksum": f"sha256:{base}/sha256sum.txt",
    }


class FilterModule:
    def filters(self):
        return {"ollama_release_archive": ollama_release_archive}
