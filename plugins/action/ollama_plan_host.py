"""Discovery, the plan, its checks and the read of how the host differs from it: the ollama role's check path on one
GPU host, as one task (issue 28). Documented in plugins/modules/ollama_plan_host.py.

Each step was a task of its own, and every task costs the controller a worker and a merge of every variable, per host
and per run: a run that changed nothing grew with the fleet. The steps run here in the task's one worker, in the
order the tasks ran. The rules stay in the role: each step templates one of the role's variables (below), once the
steps before it have set what that variable reads; the module runs are the role's modules."""

from __future__ import annotations

import hashlib
import os

from ansible._internal._templating._template_vars import generate_ansible_template_vars
from ansible.errors import AnsibleActionFail
from ansible.plugins.action import ActionBase
from ansible.template import trust_as_template

# No such interpreter: discovery through the nvidia-ml-py venv finds none before the role has installed the host.
NO_INTERPRETER = 127

# The role's variables the steps template (vars/main/plan.yml, checks.yml, host_state.yml), in this order.
DISCOVERY_FACTS = "__ollama_discovery_facts"  # GPUs, their source, the architecture, the address to listen on
SETTING_ERRORS = "__ollama_setting_errors"  # messages of the settings' rules that fail
LAYOUT_FACTS = "__ollama_layout_facts"  # the GPUs grouped into instances
STORE_READ = "__ollama_store_read"  # options of ollama_store_info
PLAN_FACTS = "__ollama_plan_facts"  # ollama_plan, fit-checked with the store's metadata
FIT_NOTES = "__ollama_fit_notes"  # what the fit check found worth saying: the task's warnings
MODEL_ERRORS = "__ollama_model_errors"  # messages of the models' rules that fail
STATE_INSTANCE = "__ollama_state_instance"  # one instance's files, drop-in directory and unit, for __instance
STATE_READ = "__ollama_state_read"  # options of ollama_host_state
DRIFT_FACTS = "__ollama_drift_facts"  # ollama_host_drift, from __ollama_state


class ActionModule(ActionBase):
    TRANSFERS_FILES = False

    def run(self, tmp=None, task_vars=None):
        result = super().run(tmp, task_vars)
        _, args = self.validate_argument_spec(
            argument_spec={
                "discovery": {"type": "dict", "required": True},
                "python": {"type": "str", "required": True},
                "check_settings": {"type": "bool", "default": True},
                "check_models": {"type": "bool", "default": True},
                "compare": {"type": "bool", "default": True},
            }
        )
        self._vars = task_vars
        facts = {}  # the host's facts: what the role's later tasks, status.yml and the gateway read
        read = {}  # the module runs' answers, which only the steps here read

        read["__ollama_discovered"], venv_missing = self._discover(args["discovery"], args["python"])
        facts.update(read["__ollama_discovered"].pop("ansible_facts", {}))  # the host's interpreter, where discovered
        # The reads below run with the interpreter discovery ran with: each module run that leaves it to Ansible to
        # find one costs a round trip to the host first (interpreter discovery).
        python = facts.get("discovered_interpreter_python") if venv_missing else args["python"]
        self._set(facts, read, DISCOVERY_FACTS)
        if args["check_settings"]:
            self._stop_on(facts, read, SETTING_ERRORS)
        self._set(facts, read, LAYOUT_FACTS)
        # refine.yml and status.yml read the store's answer again
        facts["__ollama_store_shows"] = self._module(
            "ollama.fleet.ollama_store_info", self._template(facts, read, STORE_READ), python
        )
        self._set(facts, read, PLAN_FACTS)
        result["warnings"] = self._template(facts, read, FIT_NOTES)  # misfits let through and settings adjusted
        if args["check_models"]:
            self._stop_on(facts, read, MODEL_ERRORS)
        if args["check_settings"] and args["check_models"]:
            facts["__ollama_plan_checked"] = True  # main.yml applies this plan instead of making it again

        # A host without the venv is not read: it differs in that already (a first deploy, or a venv removed), and the
        # read would be one more module run per host on every first deploy.
        if args["compare"] and venv_missing:
            facts["ollama_host_drift"] = [
                f"{self._template(facts, read, 'ollama_nvml_venv')}: no Python there (a first deploy)"
            ]
        elif args["compare"]:
            read["__ollama_state_instances"] = [
                self._rendered(facts, {**read, "__instance": instance}, STATE_INSTANCE)
                for instance in facts["ollama_plan"]
            ]
            read["__ollama_state"] = self._module(
                "ollama.fleet.ollama_host_state", self._rendered(facts, read, STATE_READ), python
            )
            self._set(facts, read, DRIFT_FACTS)

        result.update(changed=False, ansible_facts=facts)
        return result

    def _template(self, facts, read, name):
        """The role's variable NAME, templated with what the steps so far have set and read."""
        templar = self._templar.copy_with_new_env(available_variables={**self._vars, **facts, **read})
        return templar.template(trust_as_template("{{ " + name + " }}"))

    def _rendered(self, facts, read, name):
        """The variable NAME (options of ollama_host_state), where its files name a template (C(template)), with the sha1
        of that template as ansible.builtin.template writes it in their C(checksum)."""
        options = self._template(facts, read, name)
        variables = {**self._vars, **facts, **read}
        options["files"] = [
            {
                **{k: v for k, v in file.items() if k != "template"},
                "checksum": self._checksum(file["template"], variables),
            }
            if "template" in file
            else file
            for file in options["files"]
        ]
        return options

    def _checksum(self, name, variables):
        """The sha1 of the role's template NAME, rendered as ansible.builtin.template renders it: the same variables
        (a shallow copy), the same template variables (ansible_managed) and the same options. The template lookup would
        deep-copy every variable for each file, about 30 ms of the controller's CPU per file and host (issue 28)."""
        path = self._find_needle("templates", name)
        variables = {**variables}
        variables.update(
            generate_ansible_template_vars(
                path=name, fullpath=path, include_ansible_managed="ansible_managed" not in variables
            )
        )
        templar = self._templar.copy_with_new_env(searchpath=[os.path.dirname(path)], available_variables=variables)
        text = templar.template(
            trust_as_template(self._loader.get_text_file_contents(path)),
            escape_backslashes=False,
            overrides={"trim_blocks": True, "lstrip_blocks": False, "newline_sequence": "\n"},
        )
        # the checksum ansible.builtin.template compares, and ollama_host_state with it
        return hashlib.sha1((text or "").encode(), usedforsecurity=False).hexdigest()

    def _set(self, facts, read, name):
        facts.update(self._template(facts, read, name))

    def _stop_on(self, facts, read, name):
        """Fails the host with the messages of the rules NAME lists as failing, where one does."""
        errors = self._template(facts, read, name)
        if errors:
            raise AnsibleActionFail("; ".join(errors))

    def _run(self, name, options, python=None):
        task_vars = self._vars if python is None else {**self._vars, "ansible_python_interpreter": python}
        return self._execute_module(module_name=name, module_args=options, task_vars=task_vars)

    def _module(self, name, options, python=None):
        """A module's answer; its failure, message and all, is the task's."""
        answer = self._run(name, options, python)
        if answer.get("failed"):
            raise AnsibleActionFail(answer.get("msg", f"{name} failed"), result=answer)
        return answer

    def _discover(self, options, python):
        """gpu_facts through the nvidia-ml-py venv; where it has no interpreter yet, with the host's Python."""
        answer = self._run("ollama.fleet.gpu_facts", options, python)
        if answer.get("failed") and answer.get("rc") == NO_INTERPRETER:
            return self._module("ollama.fleet.gpu_facts", options), True
        if answer.get("failed"):
            raise AnsibleActionFail(answer.get("msg", "gpu_facts failed"), result=answer)
        return answer, False
