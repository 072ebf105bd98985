"""What a user of the collection does, against this scenario's host (issue 29): build the tarball, install it into a
fresh directory that has its own ansible.cfg and nothing else of this repository, and run `ansible-playbook
ollama.fleet.site` twice. The host was deployed from this repository with the same inventory, so the installed
collection's plan is checked against the repository's on a real host: a difference would be a change. First in this
scenario's verify (files run in name order), while the host is as converge left it."""

import os
import subprocess
import sys
from pathlib import Path

from helpers.fleet import inventory, recap

REPO = Path(__file__).resolve().parents[3]
BIN = Path(sys.executable).parent


def test_the_installed_collection_deploys_this_host_as_the_repository_did(tmp_path):
    subprocess.run([str(BIN / "ansible-galaxy"), "collection", "build", "--output-path", str(tmp_path), str(REPO)],
                   check=True, capture_output=True, timeout=120)  # fmt: skip
    (tarball,) = tmp_path.glob("ollama-fleet-*.tar.gz")
    user = tmp_path / "user"
    user.mkdir()
    (user / "ansible.cfg").write_text(
        "[defaults]\ncollections_path = ./collections\ninterpreter_python = auto_silent\nhost_key_checking = False\n"
        "[ssh_connection]\npipelining = True\n"
    )
    # nothing of this repository's Ansible settings: molecule's, which point at the repository, are left out
    env = {k: v for k, v in os.environ.items() if not k.startswith("ANSIBLE_")}
    env |= {"ANSIBLE_CONFIG": str(user / "ansible.cfg"), "ANSIBLE_NOCOLOR": "1"}
    subprocess.run([str(BIN / "ansible-galaxy"), "collection", "install", str(tarball), "-p", "./collections"],
                   check=True, capture_output=True, cwd=user, env=env, timeout=120)  # fmt: skip
    runs = []
    for _ in range(2):
        run = subprocess.run([str(BIN / "ansible-playbook"), "-i", inventory(), "ollama.fleet.site"],
                             capture_output=True, text=True, cwd=user, env=env, timeout=900)  # fmt: skip
        assert run.returncode == 0, run.stdout[-4000:] + run.stderr[-2000:]
        assert "ansible_collections/ollama/fleet" in run.stdout or "ollama.fleet.ollama :" in run.stdout
        runs.append(sum(host["changed"] for host in recap(run).values()))
    assert runs == [0, 0], f"changed per run: {runs}"
