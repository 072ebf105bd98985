"""What a user of the collection does, against this scenario's host (issue 29): build the tarball, install it into a
fresh directory that has its own ansible.cfg and nothing else of this repository, and run `ansible-playbook
ollama.fleet.site` twice. The host was deployed from this repository with the same inventory, so the installed
collection's plan is checked against the repository's on a real host: a difference would be a change. First in this
scenario's verify (files run in name order), while the host is as converge left it."""

import subprocess

from helpers.collection import BIN, ansible_env, install_built_collection
from helpers.fleet import inventory, recap


def test_the_installed_collection_deploys_this_host_as_the_repository_did(tmp_path):
    user = tmp_path / "user"
    user.mkdir()
    env = ansible_env(install_built_collection(tmp_path, user))
    runs = []
    for _ in range(2):
        run = subprocess.run([str(BIN / "ansible-playbook"), "-i", inventory(), "ollama.fleet.site"],
                             capture_output=True, text=True, cwd=user, env=env, timeout=900)  # fmt: skip
        assert run.returncode == 0, run.stdout[-4000:] + run.stderr[-2000:]
        assert "ansible_collections/ollama/fleet" in run.stdout or "ollama.fleet.ollama :" in run.stdout
        runs.append(sum(host["changed"] for host in recap(run).values()))
    assert runs == [0, 0], f"changed per run: {runs}"
