"""The collection as a user installs it (issue 29): built from this tree with ansible-galaxy, installed from the
tarball into a fresh directory that has its own ansible.cfg and nothing else of this repository."""

import os
import subprocess
import sys
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
USER_CONFIG = (
    "[defaults]\ncollections_path = ./collections\ninterpreter_python = auto_silent\nhost_key_checking = False\n"
    "[ssh_connection]\npipelining = True\n"
)


def galaxy_version():
    """The version galaxy.yml gives the collection: what its installed copy and the playbooks report."""
    return str(yaml.safe_load((REPO / "galaxy.yml").read_text())["version"])


def ansible_env(config, **extra):
    """The environment of an Ansible command that reads CONFIG and none of this process's ANSIBLE_* settings
    (molecule's point at the repository)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("ANSIBLE_")}
    return env | {"ANSIBLE_CONFIG": str(config), "ANSIBLE_NOCOLOR": "1", **extra}


def install_built_collection(build_dir, user_dir):
    """Build the tarball into BUILD_DIR, give USER_DIR its own ansible.cfg and install the tarball under its
    ./collections; returns USER_DIR's ansible.cfg."""
    subprocess.run([str(BIN / "ansible-galaxy"), "collection", "build", "--output-path", str(build_dir), str(REPO)],
                   check=True, capture_output=True, timeout=120)  # fmt: skip
    (tarball,) = Path(build_dir).glob("ollama-fleet-*.tar.gz")
    config = Path(user_dir) / "ansible.cfg"
    config.write_text(USER_CONFIG)
    subprocess.run([str(BIN / "ansible-galaxy"), "collection", "install", str(tarball), "-p", "./collections"],
                   check=True, capture_output=True, cwd=user_dir, env=ansible_env(config), timeout=120)  # fmt: skip
    return config
