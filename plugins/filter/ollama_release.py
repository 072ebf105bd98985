"""Which official Ollama release archive to download for a version and architecture, and its checksum."""

import re

from ansible.errors import AnsibleFilterError

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
