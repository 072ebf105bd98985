"""What a user of the collection does, on the controller: build it with `make collection`'s command, install the
tarball into a fresh directory that has its own ansible.cfg and nothing else of this repository, and plan with
`ansible-playbook ollama.fleet.plan`: the same plan as this repository's playbooks/plan.yml for the same inventory
(issue 29). Deploying from the installed collection needs a test host: that is a scenario's step, not this test."""

import json
import shutil
import subprocess

import pytest
from conftest import FIXTURES, REPO
from helpers.collection import BIN, ansible_env, galaxy_version, install_built_collection


def run(args, cwd, config):
    env = ansible_env(config, ANSIBLE_CALLBACK_RESULT_FORMAT="json")
    done = subprocess.run(args, capture_output=True, text=True, cwd=cwd, env=env, timeout=300)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return done.stdout


def shown_plan(stdout):
    """The msg of the "Show the plan" task (the default callback, results as JSON)."""
    after = stdout.split("Show the plan]", 1)[1]
    shown, _ = json.JSONDecoder().raw_decode(after[after.index("=> ") + 3 :])
    return shown["msg"]


@pytest.fixture(scope="module")
def user_dir(tmp_path_factory):
    """A fresh directory with the collection installed from its tarball and a copy of the test inventory."""
    root = tmp_path_factory.mktemp("user")
    install_built_collection(tmp_path_factory.mktemp("dist"), root)
    for fixture in ("inventory", "nvidia-smi"):
        shutil.copytree(FIXTURES / fixture, root / "fixtures" / fixture)
    return root


def test_the_built_collection_holds_what_a_user_needs_and_not_the_tests(user_dir):
    installed = user_dir / "collections/ansible_collections/ollama/fleet"
    manifest = json.loads((installed / "MANIFEST.json").read_text())["collection_info"]
    assert (manifest["namespace"], manifest["name"]) == ("ollama", "fleet")
    for needed in ("roles/ollama/tasks/main.yml", "roles/ollama_gateway/tasks/main.yml", "plugins/filter/ollama_plan.py",
                   "plugins/modules/gpu_facts.py", "plugins/module_utils/model_names.py", "playbooks/plan.yml",
                   "playbooks/files/ollama-fleet-alerts.yml", "meta/runtime.yml", "CHANGELOG.md"):  # fmt: skip
        assert (installed / needed).is_file(), needed
    for left_out in ("tests", "molecule", "bench", "collections", ".venv", ".cache", "ansible.cfg",
                     "playbooks/sandbox.yml"):  # fmt: skip
        assert not (installed / left_out).exists(), left_out


def test_the_installed_collection_passes_ansible_lint_production_profile(user_dir):
    """As a user's CI lints what it installed: every playbook and role resolves (the sandbox's playbooks, which need
    the test harness, are not shipped) and the production profile holds without this repository's .ansible-lint."""
    installed = user_dir / "collections/ansible_collections/ollama/fleet"
    env = ansible_env(user_dir / "ansible.cfg", ANSIBLE_COLLECTIONS_PATH=str(user_dir / "collections"))
    env["PATH"] = f"{BIN}:{env['PATH']}"
    lint = subprocess.run([str(BIN / "ansible-lint"), "--profile", "production", "--nocolor"],
                          capture_output=True, text=True, cwd=installed, env=env, timeout=600)  # fmt: skip
    assert lint.returncode == 0, lint.stdout[-3000:] + lint.stderr[-3000:]


def test_the_installed_collection_plans_as_this_repository_does(user_dir):
    inventory = "fixtures/inventory/hosts.yml"
    installed = run(
        [str(BIN / "ansible-playbook"), "-i", inventory, "ollama.fleet.plan"], user_dir, user_dir / "ansible.cfg"
    )
    here = run([str(BIN / "ansible-playbook"), "-i", str(FIXTURES / "inventory/hosts.yml"), "playbooks/plan.yml"],
               REPO, REPO / "ansible.cfg")  # fmt: skip
    plan = shown_plan(installed)
    assert plan == shown_plan(here)
    for stdout in (installed, here):  # the release that planned, from MANIFEST.json installed, galaxy.yml here
        assert f'"msg": "ollama.fleet {galaxy_version()}"' in stdout
    assert (
        plan[0].startswith("gpu1: 8 GPUs (inventory), 3 instances") and len(plan) == 5
    )  # a summary, the header, 3 rows


@pytest.mark.parametrize("playbook", ["site", "plan", "status", "uninstall", "prometheus"])
def test_the_installed_collections_playbooks_load_with_its_roles(user_dir, playbook):
    listed = run([str(BIN / "ansible-playbook"), "-i", "fixtures/inventory/hosts.yml", f"ollama.fleet.{playbook}",
                  "--list-tasks"], user_dir, user_dir / "ansible.cfg")  # fmt: skip
    assert f"collections/ansible_collections/ollama/fleet/playbooks/{playbook}.yml" in listed
