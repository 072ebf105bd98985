"""The download path, which cannot be reached here: URL, archive type and checksum per version and arch."""

import pytest
from ansible.errors import AnsibleFilterError
from ollama_release import ollama_release_archive

GH = "https://github.com/ollama/ollama/releases/download"


@pytest.mark.parametrize(
    "version, arch, name",
    [
        ("0.33.0", "amd64", "ollama-linux-amd64.tar.zst"),
        ("v0.33.0", "arm64", "ollama-linux-arm64.tar.zst"),
        ("0.14.0", "amd64", "ollama-linux-amd64.tar.zst"),  # first release with .tar.zst
        ("0.13.5", "amd64", "ollama-linux-amd64.tgz"),
        ("0.5.7", "arm64", "ollama-linux-arm64.tgz"),
        ("0.33.0-rc2", "amd64", "ollama-linux-amd64.tar.zst"),
    ],
)
def test_archive_name_follows_version_and_architecture(version, arch, name):
    archive = ollama_release_archive(version, arch)
    plain = version.lstrip("v")
    assert archive["name"] == name and archive["version"] == plain
    assert archive["url"] == f"{GH}/v{plain}/{name}"
    assert archive["checksum"] == f"sha256:{GH}/v{plain}/sha256sum.txt"


def test_format_can_be_forced_and_mirrors_used():
    archive = ollama_release_archive(
        "0.33.0", "amd64", base_url="https://mirror.example/ollama/{version}/", archive_format="tgz"
    )
    assert archive["url"] == "https://mirror.example/ollama/0.33.0/ollama-linux-amd64.tgz"
    assert archive["checksum"] == "sha256:https://mirror.example/ollama/0.33.0/sha256sum.txt"


@pytest.mark.parametrize(
    "args, message",
    [
        (("latest", "amd64"), "field ollama_version: 'latest' is not a release version"),
        (("0.33", "amd64"), "field ollama_version: '0.33' is not a release version"),
        (("0.33.0", "x86_64"), "no Linux release for architecture 'x86_64'; valid: amd64, arm64"),
        (("0.33.0", "amd64", "u", "zip"), "field ollama_archive_format: 'zip'; valid: auto, tar.zst, tgz"),
    ],
)
def test_bad_release_input(args, message):
    with pytest.raises(AnsibleFilterError, match=message):
        ollama_release_archive(*args)
