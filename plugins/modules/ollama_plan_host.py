#!/usr/bin/python
"""Documentation of the action plugin plugins/action/ollama_plan_host.py, which runs on the controller (issue 28)."""

from __future__ import annotations

DOCUMENTATION = r"""
module: ollama_plan_host
short_description: Discover a GPU host, plan its instances, check the plan and compare the host with it, in one task
description:
  - The C(ollama) role's check path on one GPU host (roles/ollama/tasks/plan.yml), as one task on the controller that
    runs the role's modules on the host. Each step was a task of its own, and every task costs the controller a worker
    and a merge of every variable, per host and per run, so that a run that changed nothing grew with the fleet.
  - "The steps, in order: M(ollama.fleet.gpu_facts) with O(discovery), through O(python) (the nvidia-ml-py venv), and
    with the host's Python where that interpreter is missing (exit status 127: the role has not installed the host yet);
    the facts of C(__ollama_discovery_facts) (GPUs, architecture, the address to listen on); with O(check_settings),
    the settings' rules (C(__ollama_setting_errors)); the layout (C(__ollama_layout_facts));
    M(ollama.fleet.ollama_store_info) with C(__ollama_store_read); the fit-checked plan (C(__ollama_plan_facts)); with
    O(check_models), the models' rules
    (C(__ollama_model_errors)); with O(compare), M(ollama.fleet.ollama_host_state) with C(__ollama_state_read) (each
    instance's part from C(__ollama_state_instance)) and the drift (C(__ollama_drift_facts))."
  - Each step templates that variable of the C(ollama) role (roles/ollama/vars/main) once the steps before it have set
    what it reads; the rules live there, not here. A file of the host state's options that names a C(template) gets the
    sha1 of that template of the role, rendered as M(ansible.builtin.template) writes it.
  - What the fit check found worth saying (C(__ollama_fit_notes)), misfits ollama_fit_policy lets through and settings it
    adjusted, are the task's warnings.
  - The store read and the host's read run with the interpreter discovery ran with, so that Ansible need not look for
    one on the host first (a round trip more per module run).
  - A rule that fails stops the host with the messages of every failing rule of that step, joined by C(; ). A module
    that fails stops it with the module's message.
  - Never changes anything on the host.
options:
  discovery:
    description: Options of M(ollama.fleet.gpu_facts).
    type: dict
    required: true
  python:
    description: The interpreter discovery tries first, the venv that holds nvidia-ml-py.
    type: str
    required: true
  check_settings:
    description:
      - Evaluate the settings' rules; with O(check_models) as well, set C(__ollama_plan_checked) (the check path has
        run).
    type: bool
    default: true
  check_models:
    description: Evaluate the models' rules (what plan.yml and status.yml check too).
    type: bool
    default: true
  compare:
    description:
      - Read how the host differs from the plan and set C(ollama_host_drift). A host without the venv is not read; its
        drift is that the venv has no Python (a first deploy).
    type: bool
    default: true
attributes:
  action:
    support: full
  check_mode:
    support: full
author: ollama-fleet developers
"""

EXAMPLES = r"""
# as roles/ollama/tasks/plan.yml uses it
- name: Discover the GPUs and plan the instances
  ollama.fleet.ollama_plan_host:
    discovery: "{{ __ollama_discovery }}"
    python: "{{ __ollama_nvml_python }}"
    check_settings: true
    compare: "{{ not ollama_check_everything | bool }}"
"""

RETURN = r"""
ansible_facts:
  description:
    - The keys of every facts variable of the steps (C(ollama_gpus_found), C(ollama_gpus_source), C(ollama_plan), ...),
      C(__ollama_store_shows) (the store's answer, read again by refine.yml and status.yml), after both checks
      C(__ollama_plan_checked), and with O(compare) C(ollama_host_drift), the differences as messages (empty where the
      host holds its plan).
  type: dict
  returned: success
warnings:
  description: The fit check's notes, one message each.
  type: list
  elements: str
  returned: always
"""
