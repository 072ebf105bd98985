"""playbooks/plan.yml end to end on the controller: prints the plan, or fails naming what is wrong."""

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import FIXTURES, REPO

PLAYBOOK = str(REPO / "playbooks" / "plan.yml")
INVENTORY = str(FIXTURES / "inventory" / "hosts.yml")


def plan(*extra_vars: dict) -> subprocess.CompletedProcess:
    args = [str(Path(sys.executable).parent / "ansible-playbook"), "-i", INVENTORY, PLAYBOOK]
    for ev in extra_vars:
        args += ["-e", json.dumps(ev)]
    env = {**os.environ, "ANSIBLE_CONFIG": str(REPO / "ansible.cfg"), "ANSIBLE_NOCOLOR": "1"}
    return subprocess.run(args, capture_output=True, text=True, cwd=REPO, env=env, timeout=120)


def test_plan_prints_one_row_per_instance():
    run = plan()
    assert run.returncode == 0, run.stdout[-3000:]
    assert "gpu1: 8 GPUs (inventory), 3 instances" in run.stdout
    rows = {line.split()[1]: line.split()[1:] for line in run.stdout.splitlines() if line.strip().startswith("- ")}
    assert rows["small"][:7] == ["small", "0-1", "96.0", "11435", "4", "8192", "llama3.1:8b"]
    assert rows["large"][:7] == ["large", "2-6", "239.9", "11436", "2", "32768", "llama3.3:70b"]
    assert rows["solo"][:6] == ["solo", "7", "48.0", "11437", "1", "8192"]
    assert "changed=0" in run.stdout


@pytest.mark.parametrize(
    "extra, message",
    [
        (
            {"ollama_instances": [{"name": "a", "gpus": [0, 1]}, {"name": "b", "gpus": [1]}]},
            "host gpu1, instance 'b', field gpus: GPU 1 (GPU-b224c937-90e6-5485-9f59-6bad747da062) is already in instance 'a'",
        ),
        (
            {
                "ollama_instances": [
                    {
                        "name": "big",
                        "gpus": [7],
                        "num_parallel": 4,
                        "context_length": 131072,
                        "models": ["llama3.3:70b"],
                    }
                ]
            },
            "instance 'big' on gpu1: llama3.3:70b at num_ctx 131072 × parallel 4 needs 201.0 GiB",
        ),
        (
            {"ollama_instances": [], "ollama_gpu_strategy": "round_robin"},
            "value of ollama_gpu_strategy must be one of: per_gpu, all, fixed, balanced, got: round_robin",
        ),
    ],
)
def test_bad_inventory_fails_with_the_message(extra, message):
    run = plan(extra)
    assert run.returncode != 0
    assert message in re.sub(r"\s+", " ", run.stdout)
    assert "Traceback" not in run.stdout + run.stderr
