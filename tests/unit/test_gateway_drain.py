"""ollama-gateway-drain (roles/ollama_gateway/files), the only writer of the gateway's upstreams, run as site.yml
and the health checker run it, with its paths in a temporary directory and a config check that accepts all."""

import importlib.util
import json
from importlib.machinery import SourceFileLoader
from pathlib import Path

import pytest

TOOL = Path(__file__).resolve().parents[2] / "roles" / "ollama_gateway" / "files" / "ollama-gateway-drain"


def instance(port, name):
    return {"host": "gpu1", "instance": name, "address": "127.0.0.1", "port": port, "max_conns": 1}


@pytest.fixture
def drain(tmp_path, monkeypatch):
    """The tool with a fleet of two instances (11435 and 11436); call(*argv) runs its main()."""
    loader = SourceFileLoader("ollama_gateway_drain", str(TOOL))
    tool = importlib.util.module_from_spec(importlib.util.spec_from_loader(loader.name, loader))
    loader.exec_module(tool)
    fleet = [instance(11435, "small"), instance(11436, "large")]
    (tmp_path / "fleet.json").write_text(json.dumps({"instances": fleet, "upstreams": {"ollama_all": fleet}}))
    for name, path in (
        ("FLEET", "fleet.json"),
        ("UPSTREAMS", "upstreams.conf"),
        ("MARKS", "drained"),
        ("LOCK", "lock"),
        ("CONF", "absent.conf"),
    ):
        monkeypatch.setattr(tool, name, tmp_path / path)
    monkeypatch.setattr(tool, "CHECK", "true")

    def call(*argv):
        monkeypatch.setattr("sys.argv", ["ollama-gateway-drain", *argv])
        tool.main()
        return tool

    return call


def marks(tool):
    return sorted(m.name for m in tool.MARKS.iterdir())


def test_a_mark_holds_its_instance_out_until_lifted(drain, capsys):
    tool = drain("127.0.0.1:11436", "on", "--reason", "health")
    assert marks(tool) == ["127.0.0.1:11436@health"]
    assert "server 127.0.0.1:11436 max_conns=1 max_fails=0 down;" in tool.UPSTREAMS.read_text()
    assert "server 127.0.0.1:11435 max_conns=1 max_fails=0;" in tool.UPSTREAMS.read_text()
    drain("127.0.0.1:11436", "off", "--reason", "health")
    assert marks(tool) == [] and " down" not in tool.UPSTREAMS.read_text()


def test_sync_forgets_the_marks_of_instances_gone_from_the_fleet_and_keeps_the_others(drain, capsys):
    """orphan.yml drains a removed instance and nothing lifts that mark: without sync forgetting it, it held out
    whatever instance took that port next, and status.yml showed nothing (it lists the fleet's instances)."""
    drain("127.0.0.1:11437", "on", "--reason", "restart")  # an instance since removed from the plan
    tool = drain("127.0.0.1:11436", "on", "--reason", "manual")
    capsys.readouterr()
    drain("sync", "--no-reload")
    assert marks(tool) == ["127.0.0.1:11436@manual"]
    assert "forgot 127.0.0.1:11437@restart" in capsys.readouterr().out  # site.yml reports it as a change
    drain("sync", "--no-reload")
    assert capsys.readouterr().out == ""  # nothing left to do: no change


def test_an_affine_upstream_hashes_the_conversation_over_the_same_instances_without_backups(drain):
    """nginx 1.22 refuses backup with hash; a down mark holds an instance out of both upstreams of a model."""
    tool = drain("127.0.0.1:11436", "on", "--reason", "health")
    fleet = json.loads(tool.FLEET.read_text())
    fleet["affine_upstreams"] = {"ollama_pinned_x_affine": fleet["instances"]}
    tool.FLEET.write_text(json.dumps(fleet))
    drain("sync")
    text = tool.UPSTREAMS.read_text()
    affine = text[text.index("upstream ollama_pinned_x_affine {") :]
    assert "    hash $ollama_gateway_affinity consistent;" in affine and "least_conn" not in affine
    assert "\njs_var $ollama_gateway_affinity;\n" in text  # the file passes ollama-gateway-check on its own
    assert "backup" not in affine
    assert "server 127.0.0.1:11435 max_conns=1 max_fails=0;" in affine
    assert "server 127.0.0.1:11436 max_conns=1 max_fails=0 down;" in affine
