#!/usr/bin/env python3
"""Deploy benchmark: how site.yml's time grows with the fleet, at 1, 3 and 6 simulated GPU hosts, in one run.

    .venv/bin/python bench/deploy_bench.py [--sizes 1,3,6] [--baseline] [--repeat 5]   (root; test hosts on olt-br0)

Each size gets fresh test hosts (tests/harness: systemd-nspawn, 10.213.0.101 upward), each a simulated 4× A100
server whose 4 GPUs become 4 instances pinning qwen3:0.6b, the gateway on the first host. Timed, with
ansible-playbook's wall clock:
  first deploy     site.yml on hosts that have only the simulated driver (prepare is not timed)
  no change        site.yml again; must report changed=0. The median of --repeat runs: a run of a few seconds on
                   this 2-core machine varies by some 15 % from one run to the next (the simulated hosts share its
                   cores), more than what a change of the no-change path moves
  rolling change   site.yml -e ollama_keep_alive=10m: every instance restarts, drained first and warm before
                   it rejoins
With --baseline, also (after the no-change run):
  every task       site.yml -e ollama_check_everything=true: no change either, but every host runs all of the
                   role's tasks, as every run did before the no-change path (issue 28)
It prints one Markdown table for the README: seconds and the ratio to one host, and the controller's CPU seconds
(user + system of ansible-playbook and everything it ran: its workers, ssh) for each run. Each timed run's cost per
task (bench/callback_plugins/task_times.py) goes to .cache/bench/deploy/RUN-tasks-SIZE.json (RUN: first, no-change,
rolling), so that two revisions' runs compare task by task.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]
WORK = REPO / ".cache" / "bench" / "deploy"
HARNESS = REPO / "tests" / "harness" / "nspawn.py"
ARTIFACTS = REPO / ".cache" / "artifacts"
BIN = Path(sys.executable).parent


def hosts(size):
    return {f"olt-bench-{n}": f"10.213.0.{100 + n}" for n in range(1, size + 1)}


def inventory(size, key):
    names = hosts(size)
    return {
        "all": {
            "vars": {
                "ansible_user": "root",
                "ansible_ssh_private_key_file": str(key),
                "ansible_ssh_common_args": "-o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null",
            },
            "children": {
                "ollama_gpu_hosts": {
                    "hosts": {name: {"ansible_host": address} for name, address in names.items()},
                    "vars": {
                        "simulated_host_gpu_spec": "a100x4",
                        "ollama_gpu_strategy": "per_gpu",
                        "ollama_models": ["qwen3:0.6b"],
                        "ollama_archive_src": str(ARTIFACTS / "release/ollama-linux-amd64.tgz"),
                        "ollama_nvml_wheel_src": str(ARTIFACTS / "wheels/nvidia_ml_py-13.615.71-py3-none-any.whl"),
                    },
                },
                "ollama_gateway": {"hosts": {next(iter(names)): {}}},
            },
        }
    }


def playbook(path, inv, *extra, times_out=None):
    env = {
        **os.environ,
        **(task_times(times_out) if times_out else {}),
        "ANSIBLE_CONFIG": str(REPO / "ansible.cfg"),
        "ANSIBLE_ROLES_PATH": f"{REPO / 'roles'}:{REPO / 'tests' / 'roles'}",
        "ANSIBLE_HOST_KEY_CHECKING": "false",
        "ANSIBLE_PIPELINING": "true",
        "ANSIBLE_NOCOLOR": "1",
    }
    args = [str(BIN / "ansible-playbook"), "-i", str(inv), str(REPO / path)]
    for ev in extra:
        args += ["-e", json.dumps(ev)]
    started, used = time.monotonic(), cpu_of_children()
    run = subprocess.run(args, capture_output=True, text=True, env=env, cwd=REPO, timeout=3600)
    seconds, cpu = time.monotonic() - started, cpu_of_children() - used
    if run.returncode != 0:
        sys.exit(f"{path} failed:\n{run.stdout[-4000:]}\n{run.stderr[-2000:]}")
    changed = sum(int(n) for n in re.findall(r"changed=(\d+)", run.stdout.split("PLAY RECAP", 1)[-1]))
    return seconds, changed, cpu


def task_times(out):
    """The environment that has the run write each task's wall and CPU seconds to OUT."""
    return {
        "ANSIBLE_CALLBACK_PLUGINS": str(REPO / "bench" / "callback_plugins"),
        "ANSIBLE_CALLBACKS_ENABLED": "task_times",
        "TASK_TIMES_OUT": str(out),
    }


def cpu_of_children():
    """CPU seconds (user + system) of the children this process has waited for: a finished ansible-playbook with
    its workers and ssh connections, which it waited for."""
    used = resource.getrusage(resource.RUSAGE_CHILDREN)
    return used.ru_utime + used.ru_stime


def measure(size, key, baseline, repeat):
    names = hosts(size)
    inv = WORK / f"inventory-{size}.yml"
    inv.write_text(yaml.safe_dump(inventory(size, key)))
    try:
        for name, address in names.items():
            subprocess.run([sys.executable, str(HARNESS), "up", name, address, "--pubkey", f"{key}.pub"],
                           check=True, capture_output=True)  # fmt: skip
        playbook("molecule/resources/prepare.yml", inv)
        first, _, first_cpu = playbook("site.yml", inv, times_out=WORK / f"first-tasks-{size}.json")
        runs = [playbook("site.yml", inv, times_out=WORK / f"no-change-tasks-{size}.json") for _ in range(repeat)]
        again, again_cpu = (statistics.median(run[i] for run in runs) for i in (0, 2))
        changed = max(run[1] for run in runs)  # any run that changed something shows
        every = playbook("site.yml", inv, {"ollama_check_everything": True}) if baseline else (0, 0, 0)
        rolling, _, rolling_cpu = playbook(
            "site.yml", inv, {"ollama_keep_alive": "10m"}, times_out=WORK / f"rolling-tasks-{size}.json"
        )
        return {"hosts": size, "instances": 4 * size, "first": first, "first_cpu": first_cpu, "again": again,
                "again_changed": changed, "again_cpu": again_cpu, "every": every[0], "every_changed": every[1],
                "every_cpu": every[2], "rolling": rolling, "rolling_cpu": rolling_cpu}  # fmt: skip
    finally:
        for name in names:
            subprocess.run([sys.executable, str(HARNESS), "down", name], capture_output=True)


def table(rows, baseline):
    base = rows[0]
    every = " no change, every task (baseline) | ratio | its CPU per host |" if baseline else ""
    lines = [
        "| hosts (instances) | first deploy | no change | ratio | no change: controller CPU per host |"
        + every
        + " rolling change (every instance) | ratio |",
        "|---|---|---|---|---|" + "---|---|---|" * baseline + "---|---|",
    ]
    for r in rows:
        every = (  # without --baseline there is no such run to show
            f" {r['every']:.0f} s (changed={r['every_changed']}) | {r['every'] / base['every']:.2f}× |"
            f" {r['every_cpu'] / r['hosts']:.1f} s |"
            if baseline
            else ""
        )
        lines.append(
            f"| {r['hosts']} ({r['instances']}) | {r['first']:.0f} s | {r['again']:.1f} s (changed={r['again_changed']})"
            f" | {r['again'] / base['again']:.2f}× | {r['again_cpu'] / r['hosts']:.1f} s |"
            + every
            + f" {r['rolling']:.0f} s | {r['rolling'] / base['rolling']:.2f}× |"
        )
    return "\n".join(lines)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="1,3,6")
    parser.add_argument("--baseline", action="store_true", help="also time a no-change run of every task")
    parser.add_argument("--repeat", type=int, default=5, help="no-change runs per size, of which the median counts")
    args = parser.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    WORK.mkdir(parents=True, exist_ok=True)
    key = WORK / "id_ed25519"
    if not key.exists():
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key)], check=True)
    rows = []
    for size in sizes:
        rows.append(measure(size, key, args.baseline, args.repeat))
        print(json.dumps(rows[-1]), file=sys.stderr, flush=True)
    (WORK / "results.json").write_text(json.dumps(rows, indent=2))
    cores = os.cpu_count()
    print(f"Deploy benchmark, {time.strftime('%Y-%m-%d')}: simulated 4× A100 hosts, 4 instances each, gateway on the "
          f"first; controller with {cores} cores, forks 10; `.venv/bin/python bench/deploy_bench.py"
          f" --sizes {args.sizes}{' --baseline' if args.baseline else ''} --repeat {args.repeat}`; no change: the median"
          f" of {args.repeat} runs\n")  # fmt: skip
    print(table(rows, args.baseline))


if __name__ == "__main__":
    main()
