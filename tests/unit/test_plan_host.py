"""ollama_plan_host, the ollama role's check path as one task (issue 28): its steps in the role's order, each seeing what
the steps before set; a failing rule or module stops the host with its message; the host's state rendered as
ansible.builtin.template writes it. The modules are stood in for here (their own tests are test_gpu_facts.py,
test_ollama_store.py and test_host_state.py); the whole path runs in every molecule scenario."""

import hashlib
import importlib.util
from pathlib import Path
from unittest import mock

import pytest
from ansible.errors import AnsibleActionFail
from ansible.parsing.dataloader import DataLoader
from ansible.template import Templar, trust_as_template

REPO = Path(__file__).resolve().parents[2]
spec = importlib.util.spec_from_file_location("ollama_plan_host", REPO / "plugins/action/ollama_plan_host.py")
action_module = importlib.util.module_from_spec(spec)
spec.loader.exec_module(action_module)

GPUS = [{"index": 0, "name": "NVIDIA A100", "memory_total_mb": 40960}]


def role_vars(**overrides):
    """The variables the steps read, as the role would have them: small stand-ins for the rules of vars/main."""
    names = {
        "__ollama_discovery_facts": {"ollama_gpus_found": "{{ __ollama_discovered.gpus }}"},
        "__ollama_setting_errors": "{{ ['architecture ' ~ __ollama_discovered.architecture] if bad_setting else [] }}",
        "__ollama_layout_facts": {"__ollama_layout": "{{ ollama_gpus_found | map(attribute='index') | list }}"},
        "__ollama_store_read": {"urls": "{{ __ollama_layout | map('string') | list }}"},
        "__ollama_plan_facts": {"ollama_plan": "{{ [{'name': 'gpu0', 'models': __ollama_store_shows.tags.models}] }}"},
        "__ollama_fit_notes": "{{ ['instance gpu0: adjusted'] if adjusted else [] }}",
        "__ollama_model_errors": "{{ ['one', 'two'] if bad_models else [] }}",
        "__ollama_state_instance": {"files": [{"path": "/etc/{{ __instance.name }}.env", "template": "x.j2"}]},
        "__ollama_state_read": {"files": "{{ __ollama_state_instances | map(attribute='files') | flatten }}"},
        "__ollama_drift_facts": {"ollama_host_drift": "{{ __ollama_state.drift }}"},
        "ollama_nvml_venv": "/opt/ollama-fleet/nvml",
        "bad_setting": False,
        "bad_models": False,
        "adjusted": False,
    }
    names.update(overrides)
    return trusted(names)


def trusted(value):
    """VALUE with every string trusted as a template, as Ansible trusts the role's YAML."""
    if isinstance(value, dict):
        return {key: trusted(item) for key, item in value.items()}
    if isinstance(value, list):
        return [trusted(item) for item in value]
    return trust_as_template(value) if isinstance(value, str) else value


class Host:
    """Stands in for the modules on one host: their answers by name, and the runs in order."""

    def __init__(self, **answers):
        self.answers = {
            "ollama.fleet.gpu_facts": [{"gpus": GPUS, "architecture": "x86_64"}],
            "ollama.fleet.ollama_store_info": [{"tags": {"models": [{"name": "qwen3:0.6b"}]}, "results": []}],
            "ollama.fleet.ollama_host_state": [{"drift": [], "loaded": [], "tags": {"models": []}}],
        }
        self.answers.update(answers)
        self.runs = []

    def execute(self, module_name, module_args, task_vars):
        self.runs.append((module_name, module_args, task_vars.get("ansible_python_interpreter")))
        return dict(self.answers[module_name].pop(0))


def run(host, check_settings=True, check_models=True, compare=True, **overrides):
    variables = role_vars(**overrides)
    loader = DataLoader()
    task = mock.MagicMock(async_val=0, check_mode=False)
    task.args = {"discovery": {"source": "auto"}, "python": "/venv/python", "compare": compare,
                 "check_settings": check_settings, "check_models": check_models}  # fmt: skip
    connection = mock.MagicMock()
    connection._shell.tmpdir = "/tmp"
    action = action_module.ActionModule(task, connection, mock.MagicMock(), loader, Templar(loader, variables), None)
    action._execute_module = host.execute
    action._find_needle = lambda folder, name: str(TEMPLATE)
    return action.run(task_vars=variables)


TEMPLATE = Path(__file__).parent / "fixtures/plan_host/x.j2"


def test_the_steps_run_in_the_roles_order_each_seeing_what_the_ones_before_set():
    host = Host()
    facts = run(host)["ansible_facts"]
    assert [name for name, _, _ in host.runs] == [
        "ollama.fleet.gpu_facts",
        "ollama.fleet.ollama_store_info",
        "ollama.fleet.ollama_host_state",
    ]
    # through the venv's interpreter, each: none leaves it to Ansible to find one (a round trip to the host more)
    assert [python for _, _, python in host.runs] == ["/venv/python"] * 3
    assert host.runs[1][1] == {"urls": ["0"]}  # the store read, from the layout of the discovered GPUs
    assert facts["ollama_plan"] == [{"name": "gpu0", "models": [{"name": "qwen3:0.6b"}]}]  # from the store's answer
    assert facts["__ollama_plan_checked"] is True
    assert facts["ollama_host_drift"] == []
    assert "__ollama_discovered" not in facts  # the module runs' answers stay in the task, the store's aside
    assert facts["__ollama_store_shows"]["tags"] == {"models": [{"name": "qwen3:0.6b"}]}


def test_the_host_state_gets_each_instances_files_with_the_sha1_the_template_module_would_write():
    host = Host()
    run(host)
    (file,) = host.runs[2][1]["files"]
    assert file["path"] == "/etc/gpu0.env" and "template" not in file
    # as the template lookup renders it (ansible_managed, trim_blocks), without its deep copy of every variable
    lookup = Templar(DataLoader(), {"__instance": {"name": "gpu0"}}).template(
        trust_as_template("{{ lookup('template', '" + str(TEMPLATE) + "') }}")
    )
    assert "gpu0" in lookup and "\n\n" not in lookup
    assert file["checksum"] == hashlib.sha1(lookup.encode()).hexdigest()


def test_what_the_fit_check_adjusted_or_let_through_is_shown_as_a_warning():
    assert run(Host())["warnings"] == []
    assert run(Host(), adjusted=True)["warnings"] == ["instance gpu0: adjusted"]


def test_a_drift_the_read_finds_is_the_hosts_drift():
    host = Host(**{"ollama.fleet.ollama_host_state": [{"drift": ["file /etc/gpu0.env: content differs"]}]})
    assert run(host)["ansible_facts"]["ollama_host_drift"] == ["file /etc/gpu0.env: content differs"]


def test_a_host_without_the_venv_is_discovered_with_its_own_python_and_not_read():
    found = {"ansible_facts": {"discovered_interpreter_python": "/usr/bin/python3.11"}}
    host = Host(
        **{"ollama.fleet.gpu_facts": [{"failed": True, "rc": 127, "msg": "no interpreter"}, {"gpus": GPUS, **found}]}
    )
    facts = run(host)["ansible_facts"]
    assert [(name, python) for name, _, python in host.runs] == [
        ("ollama.fleet.gpu_facts", "/venv/python"),
        ("ollama.fleet.gpu_facts", None),  # the host's Python, which Ansible finds
        ("ollama.fleet.ollama_store_info", "/usr/bin/python3.11"),  # the one it found
    ]
    assert facts["discovered_interpreter_python"] == "/usr/bin/python3.11"  # the host's later tasks need not look
    assert facts["ollama_host_drift"] == ["/opt/ollama-fleet/nvml: no Python there (a first deploy)"]


def test_discovery_that_fails_otherwise_stops_the_host_with_its_message():
    host = Host(**{"ollama.fleet.gpu_facts": [{"failed": True, "rc": 1, "msg": "NVML: driver/library mismatch"}]})
    with pytest.raises(AnsibleActionFail, match="NVML: driver/library mismatch"):
        run(host)
    assert len(host.runs) == 1


def test_failing_settings_stop_the_host_before_the_store_is_read():
    host = Host()
    with pytest.raises(AnsibleActionFail, match="^architecture x86_64$"):
        run(host, bad_setting=True)
    assert [name for name, _, _ in host.runs] == ["ollama.fleet.gpu_facts"]


def test_every_failing_model_rule_is_named_and_the_host_is_not_read():
    host = Host()
    with pytest.raises(AnsibleActionFail, match="^one; two$"):
        run(host, bad_models=True)
    assert "ollama.fleet.ollama_host_state" not in [name for name, _, _ in host.runs]


def test_without_the_checks_no_rule_runs_and_without_compare_the_host_is_not_read():
    host = Host()
    facts = run(host, False, False, compare=False, bad_setting=True, bad_models=True)["ansible_facts"]
    assert facts["ollama_plan"] and "__ollama_plan_checked" not in facts and "ollama_host_drift" not in facts
    assert len(host.runs) == 2


def test_plan_yml_and_status_yml_check_the_models_but_not_the_settings():
    facts = run(Host(), check_settings=False, compare=False, bad_setting=True)["ansible_facts"]
    assert "__ollama_plan_checked" not in facts  # site.yml's install play makes the plan again
    with pytest.raises(AnsibleActionFail, match="^one; two$"):
        run(Host(), check_settings=False, compare=False, bad_models=True)
