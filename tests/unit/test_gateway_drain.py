"""ollama-gateway-drain (roles/ollama_gateway/files), the only writer of the gateway's upstreams, run as site.yml
and the health checker run it, with its paths in a temporary directory and a config check that accepts all."""

import importlib.util
import json
import subprocess
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
        tool.status = tool.main()
        return tool

    return call


def marks(tool):
    return sorted(m.name for m in tool.MARKS.iterdir())


def test_a_mark_holds_its_instance_out_until_lifted(drain, capsys):
    """An instance is named as the plan names it, HOST/INSTANCE; the tool finds its server lines in fleet.json."""
    tool = drain("gpu1/large", "on", "--reason", "health")
    assert marks(tool) == ["127.0.0.1:11436@health"]
    assert "server 127.0.0.1:11436 max_conns=1 max_fails=0 down;" in tool.UPSTREAMS.read_text()
    assert "server 127.0.0.1:11435 max_conns=1 max_fails=0;" in tool.UPSTREAMS.read_text()
    drain("gpu1/large", "off", "--reason", "health")
    assert marks(tool) == [] and " down" not in tool.UPSTREAMS.read_text()


def test_an_instance_the_fleet_lacks_is_named_with_those_it_has(drain, capsys):
    """Exit status 3, nothing marked: rotate.yml lets a gateway whose fleet predates the instance pass."""
    tool = drain("gpu1/gone", "on")
    assert tool.status == 3 and not tool.MARKS.exists()
    assert "no instance gpu1/gone in " in capsys.readouterr().err
    drain("127.0.0.1:11436", "on")  # an address is no name
    assert tool.status == 3 and "its instances: gpu1/large, gpu1/small" in capsys.readouterr().err


def test_a_new_instance_on_a_retired_ones_port_lifts_the_mark_that_retirement_left(drain, capsys):
    """An instance renamed (a GPU lost, a new group) retires the old one, drained by name, and starts on its port
    before the gateway's fleet.json names it: its put-back, given its port, lifts the old drain. Without it the
    old mark outlived the retirement and held the new instance out: the faults suite's rolling upgrade found
    every instance of the fleet held out and got 502 for every request."""
    tool = drain("gpu1/small", "on", "--reason", "restart")  # the retirement
    drain("gpu1/gpu0-3", "on", "--reason", "restart", "--port", "11435")
    assert tool.status == 0 and marks(tool) == ["127.0.0.1:11435@restart"]
    drain("gpu1/gpu0-3", "off", "--reason", "restart", "--port", "11435")
    assert tool.status == 0 and marks(tool) == [] and " down" not in tool.UPSTREAMS.read_text()
    drain("gpu1/gpu0-3", "off", "--reason", "restart", "--port", "11499")  # a port no instance of gpu1 had
    assert tool.status == 3
    drain("gpu2/small", "off", "--reason", "restart", "--port", "11435")  # another host's instance is not it
    assert tool.status == 3


def test_an_instance_moved_to_a_retired_ones_port_is_drained_and_put_back_on_both(drain, capsys):
    """Automatic ports: removing `small` (11435) moves `large` from 11436 to 11435. Its rotation runs while the
    fleet still has it on 11436: it drains and puts back both addresses, so the retirement's mark on 11435, the
    address the next fleet.json gives `large`, does not hold it out for good."""
    tool = drain("gpu1/small", "on", "--reason", "restart")  # the retirement
    drain("gpu1/large", "on", "--reason", "restart", "--port", "11435")
    assert marks(tool) == ["127.0.0.1:11435@restart", "127.0.0.1:11436@restart"]
    drain("gpu1/large", "off", "--reason", "restart", "--port", "11435")
    assert tool.status == 0 and marks(tool) == []


def test_without_a_fleet_every_instance_is_unknown(drain, capsys):
    """A gateway whose first run stopped before it wrote fleet.json sends nothing to anyone: exit 3, as rotate.yml
    lets pass, not a traceback that fails every restart."""
    tool = drain("gpu1/small", "on")
    tool.FLEET.unlink()
    drain("gpu1/small", "off")
    assert tool.status == 3 and "Traceback" not in capsys.readouterr().err


def test_sync_forgets_the_marks_of_instances_gone_from_the_fleet_and_keeps_the_others(drain, capsys):
    """orphan.yml drains a removed instance and nothing lifts that mark: without sync forgetting it, it held out
    whatever instance took that port next, and status.yml showed nothing (it lists the fleet's instances)."""
    tool = drain("gpu1/large", "on", "--reason", "manual")
    fleet = json.loads(tool.FLEET.read_text())
    removed = instance(11437, "removed")
    tool.FLEET.write_text(json.dumps(dict(fleet, instances=[*fleet["instances"], removed])))
    drain("gpu1/removed", "on", "--reason", "restart")  # orphan.yml, then site.yml writes the fleet without it
    tool.FLEET.write_text(json.dumps(fleet))
    capsys.readouterr()
    drain("sync", "--no-reload")
    assert marks(tool) == ["127.0.0.1:11436@manual"]
    assert "forgot 127.0.0.1:11437@restart" in capsys.readouterr().out  # site.yml reports it as a change
    drain("sync", "--no-reload")
    assert capsys.readouterr().out == ""  # nothing left to do: no change


def test_an_affine_upstream_hashes_the_conversation_over_the_same_instances_without_backups(drain):
    """nginx 1.22 refuses backup with hash; a down mark holds an instance out of both upstreams of a model."""
    tool = drain("gpu1/large", "on", "--reason", "health")
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


def test_the_upstreams_render_whole(drain):
    """The whole file for one pinned model on both instances, one drained: least_conn at the model's slots with
    the same instances as unlimited backups (a burst queues), and the affine upstream hashing conversations."""
    tool = drain("gpu1/large", "on")
    fleet = json.loads(tool.FLEET.read_text())
    pinned = [dict(i, max_conns=2, gpu_label="GPU 0") for i in fleet["instances"]]
    fleet["upstreams"] = {"ollama_pinned_x": pinned}
    fleet["affine_upstreams"] = {"ollama_pinned_x_affine": pinned}
    assert tool.render(fleet, tool.drained()).splitlines()[3:] == [
        "js_var $ollama_gateway_affinity;",
        "",
        "upstream ollama_pinned_x {",
        "    zone ollama_pinned_x 128k;",
        "    least_conn;",
        "    server 127.0.0.1:11435 max_conns=2 max_fails=0;  # gpu1/small GPU 0",
        "    server 127.0.0.1:11436 max_conns=2 max_fails=0 down;  # gpu1/large GPU 0",
        "    server 127.0.0.1:11435 backup max_fails=0;",
        "    server 127.0.0.1:11436 backup max_fails=0 down;",
        "    keepalive 16;",
        "}",
        "",
        "upstream ollama_pinned_x_affine {",
        "    zone ollama_pinned_x_affine 128k;",
        "    hash $ollama_gateway_affinity consistent;",
        "    server 127.0.0.1:11435 max_conns=2 max_fails=0;  # gpu1/small",
        "    server 127.0.0.1:11436 max_conns=2 max_fails=0 down;  # gpu1/large",
        "    keepalive 16;",
        "}",
    ]


FAKE_DRAIN = """#!/bin/sh
# ollama-gateway-drain as the checker sees it: the mark of 127.0.0.1:9, kept only when rendering works
[ -e "%(dir)s/broken" ] && { echo "nginx -t failed" >&2; exit 1; }
if [ "$2" = on ]; then touch "%(dir)s/marks/127.0.0.1:9@health"; else rm -f "%(dir)s/marks/127.0.0.1:9@health"; fi
"""


def test_the_health_checker_holds_out_what_the_drain_tool_marked_and_retries_a_failed_drain(
    tmp_path, monkeypatch, capsys
):
    """It used to note an instance as out before calling the drain tool and never looked at its exit status: a
    failed drain (the tool could not render the upstreams) left the checker sure it was out, and the mark for
    good. Now the marks on disk are its state, and a drain that failed is tried again the next round."""
    loader = SourceFileLoader("ollama_gateway_health", str(TOOL.with_name("ollama-gateway-health")))
    health = importlib.util.module_from_spec(importlib.util.spec_from_loader(loader.name, loader))
    loader.exec_module(health)
    (tmp_path / "marks").mkdir()
    fake = tmp_path / "drain"
    fake.write_text(FAKE_DRAIN % {"dir": tmp_path})
    fake.chmod(0o755)
    monkeypatch.setattr(health, "DRAIN", str(fake))
    monkeypatch.setattr(health, "MARKS", tmp_path / "marks")
    state = {"up": False}
    monkeypatch.setattr(health, "is_up", lambda instance, up: state["up"])
    fleet = {
        "instances": [instance(9, "small")],
        "up": {"path": "/api/version", "timeout": 1, "fails": 2, "interval": 3},
    }
    failures = {}
    held = lambda: sorted(m.name for m in (tmp_path / "marks").iterdir())  # noqa: E731
    health.check(fleet, failures)
    assert held() == [] and failures == {"gpu1/small": 1}  # one failed probe of two: still in
    (tmp_path / "broken").touch()
    health.check(fleet, failures)
    assert held() == [] and "gpu1/small: ollama-gateway-drain on failed (1): nginx -t failed" in capsys.readouterr().out
    (tmp_path / "broken").unlink()
    health.check(fleet, failures)
    assert held() == ["127.0.0.1:9@health"]  # tried again, and now it took
    state["up"] = True
    health.check(fleet, failures)
    assert held() == [] and failures == {"gpu1/small": 0}  # up again: back in


def test_a_failed_render_leaves_the_marks_as_they_were(drain, monkeypatch, capsys):
    """The marks are what nginx runs: a mark whose upstreams could not be rendered goes again."""
    tool = drain("gpu1/large", "on", "--reason", "manual")
    monkeypatch.setattr(tool, "CHECK", "false")
    tool.UPSTREAMS.unlink()  # so that the next call must render
    with pytest.raises(subprocess.CalledProcessError):
        drain("gpu1/small", "on", "--reason", "health")
    assert marks(tool) == ["127.0.0.1:11436@manual"]


def test_check_says_whether_the_upstreams_are_what_sync_renders(drain, capsys):
    """site.yml's one read of the gateway asks the tool (ollama_host_state's commands): a hand edit is a difference."""
    assert drain("check").status == 1  # nothing rendered yet
    tool = drain("sync", "--no-reload")
    assert drain("check").status == 0
    drain("gpu1/large", "on", "--reason", "health")  # a drain changes what is rendered, and renders it
    assert drain("check").status == 0
    tool.UPSTREAMS.write_text(tool.UPSTREAMS.read_text() + "# by hand\n")
    capsys.readouterr()
    assert drain("check").status == 1
    assert "upstreams.conf: differs from what fleet.json and the drain marks render" in capsys.readouterr().err
    drain("sync", "--no-reload")
    assert drain("check").status == 0 and "# by hand" not in tool.UPSTREAMS.read_text()
