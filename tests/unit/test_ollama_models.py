"""The model store's rules (plugins/filter/ollama_models.py) and ollama_pull against the stand-in: where a model
comes from, which digest it must have, which models leave, and the progress of a pull while it runs."""

import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from ansible.errors import AnsibleFilterError
from conftest import REPO
from helpers import public_registry
from ollama_models import (
    ollama_digest_mismatches,
    ollama_models_to_remove,
    ollama_pull_progress,
    ollama_registry_gaps,
    ollama_registry_name,
    ollama_store_digest_table,
    ollama_store_digests,
)

A, B = "a" * 64, "b" * 64


@pytest.mark.parametrize(
    ("model", "registry", "pulled"),
    [
        ("llama3.1:8b", "", "llama3.1:8b"),
        ("Llama3.1", "", "Llama3.1:latest"),  # as Ollama shows it: a store keeps the case of a first pull
        ("library/Qwen3:0.6B", "10.0.0.5:5000", "10.0.0.5:5000/library/qwen3:0.6b"),
        ("llama3.1:8b", "10.0.0.5:5000", "10.0.0.5:5000/library/llama3.1:8b"),
        ("team/coder:7b", "reg.example", "reg.example/team/coder:7b"),
        ("other.example/team/coder:7b", "reg.example", "other.example/team/coder:7b"),
    ],
)
def test_a_model_is_pulled_from_the_fleets_registry_under_its_own_path(model, registry, pulled):
    assert ollama_registry_name(model, registry) == pulled


def test_a_model_the_fleets_registry_was_not_loaded_with_is_found_before_any_pull():
    hostvars = {"infra1": {"ansible_host": "10.0.0.5", "ollama_registry_models": ["llama3.1:8b", "Qwen3:0.6B"]}}
    pinned = ["llama3.1:8b", "qwen3:0.6b", "gemma3:27b", "hf.co/org/model:q4"]
    gaps = ollama_registry_gaps(pinned, "10.0.0.5:5000", hostvars, ["infra1"])
    assert gaps == {"host": "infra1", "missing": ["gemma3:27b"]}  # hf.co/... names a registry of its own
    assert ollama_registry_gaps(pinned, "infra1:5000", hostvars, ["infra1"])["missing"] == ["gemma3:27b"]
    # a registry outside the inventory: nothing to check against
    assert ollama_registry_gaps(pinned, "registry.example:5000", hostvars, ["infra1"]) == {"host": "", "missing": []}


def test_digest_mismatches_name_the_model_and_accept_the_short_id_ollama_list_shows():
    tags = {"models": [{"name": "llama3.1:8b", "digest": A}, {"name": "qwen3:0.6b", "digest": B}]}
    pins = {"llama3.1:8b": "sha256:" + B, "qwen3:0.6b": B[:12], "gemma3:27b": A}
    found = ollama_digest_mismatches(tags, ["llama3.1:8b", "qwen3:0.6b", "gemma3:27b"], pins)
    # qwen3 matches by its 12-digit ID; gemma3 is not in the store yet (the pull checks it)
    assert found == [{"model": "llama3.1:8b", "want": B, "have": A}]
    assert ollama_digest_mismatches(tags, ["qwen3:0.6b"], {"llama3.1:8b": B}) == []  # pinned but not here


@pytest.mark.parametrize("bad", ["sha256:xyz", "abc", "sha512:" + A, A + "0"])
def test_a_digest_that_is_not_one_is_rejected_naming_host_field_and_model(bad):
    with pytest.raises(AnsibleFilterError, match=r"host gpu1, field ollama_model_digests, model llama3.1:8b: digest"):
        ollama_digest_mismatches({"models": []}, [], {"llama3.1:8b": bad}, host="gpu1")


def test_only_what_the_toolkit_pinned_or_the_operator_names_leaves_and_never_a_pinned_model():
    stored = ["llama3.1:8b", "qwen3:0.6b", "ops-model:latest", "old:1b"]
    # old:1b was pinned by an earlier run; ops-model the toolkit never pinned
    assert ollama_models_to_remove(stored, ["llama3.1:8b"], ["llama3.1:8b", "old:1b"], [], False) == ["old:1b"]
    assert ollama_models_to_remove(stored, ["llama3.1:8b"], [], ["qwen3:0.6b", "gone:7b"], False) == ["qwen3:0.6b"]
    assert ollama_models_to_remove(stored, ["llama3.1:8b"], [], [], True) == [
        "old:1b",
        "ops-model:latest",
        "qwen3:0.6b",
    ]
    assert ollama_models_to_remove(stored, ["llama3.1:8b"], ["llama3.1:8b"], ["llama3.1:8b"], True) != ["llama3.1:8b"]
    assert "llama3.1:8b" not in ollama_models_to_remove(stored, ["llama3.1:8b"], ["llama3.1:8b"], ["llama3.1:8b"], True)


def test_a_progress_line_has_percent_size_rate_and_time():
    line = ollama_pull_progress(
        {"model": "llama3.1:8b", "status": "pulling 667b0c1932bc", "completed": 2 * 2**30, "total": 4 * 2**30,
         "rate": 80 * 2**20, "elapsed": 25.4}
    )  # fmt: skip
    assert line == "llama3.1:8b: 50% of 4.0 GiB at 80.0 MiB/s, 25 s (pulling 667b0c1932bc)"
    assert "failed" in ollama_pull_progress({"model": "x", "error": "pull model manifest: file does not exist"})
    assert (
        ollama_pull_progress({"model": "x", "status": "pulling manifest", "elapsed": 1}) == "x: pulling manifest (1 s)"
    )


def status(name, store, pinned, digests=None):
    models = [{"name": n, "digest": d} for n, d in store.items()]
    return {"inventory_hostname": name, "ollama_status_report": {"store": {"models": models}, "pinned": pinned,
                                                           "digests": digests or {}}}  # fmt: skip


def test_status_flags_hosts_that_disagree_and_hosts_off_the_pin():
    hosts = [
        status("gpu1", {"llama3.1:8b": A, "qwen3:0.6b": B}, ["llama3.1:8b", "qwen3:0.6b"]),
        status("gpu2", {"llama3.1:8b": B}, ["llama3.1:8b"]),
        status("gpu3", {"llama3.1:8b": A}, ["llama3.1:8b"]),
    ]
    rows = ollama_store_digests(hosts)
    assert [(r["model"], r["digest"], r["hosts"], r["problem"]) for r in rows] == [
        ("llama3.1:8b", A[:12], ["gpu1", "gpu3"], "hosts disagree"),
        ("llama3.1:8b", B[:12], ["gpu2"], "hosts disagree"),
        ("qwen3:0.6b", B[:12], ["gpu1"], ""),
    ]
    hosts[0]["ollama_status_report"]["digests"] = {"llama3.1:8b": "sha256:" + A}
    problems = {(r["digest"], r["problem"]) for r in ollama_store_digests(hosts) if r["problem"]}
    assert problems == {(B[:12], f"pinned {A[:12]}")}
    table = ollama_store_digest_table(ollama_store_digests(hosts))
    assert table[0].split() == ["model", "digest", "hosts", "problem"] and table[-1].endswith("ok")


def test_an_unreachable_host_leaves_the_digests_to_the_others():
    hosts = [status("gpu1", {"llama3.1:8b": A}, ["llama3.1:8b"]), {"inventory_hostname": "gpu2"}]
    assert [(r["hosts"], r["problem"]) for r in ollama_store_digests(hosts)] == [(["gpu1"], "")]


# --- ollama_pull through Ansible, against the stand-in -------------------------------------------------------
def pull(tmp_path, url, model, source=None, insecure=False):
    """Runs ollama_pull as the play does (in the background); returns (result, progress snapshots)."""
    progress = tmp_path / "progress.json"
    args = {"url": url, "model": model, "progress_file": str(progress), "insecure": insecure}
    if source:
        args["source"] = source
    env = {
        **os.environ,
        "ANSIBLE_CONFIG": str(REPO / "ansible.cfg"),
    }
    ansible = str(Path(sys.executable).parent / "ansible")
    proc = subprocess.Popen(
        [ansible, "localhost", "-c", "local", "-e", f"ansible_python_interpreter={sys.executable}",
         "-m", "ollama.fleet.ollama_pull", "-a", json.dumps(args), "--tree", str(tmp_path / "tree")],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=REPO,
    )  # fmt: skip
    seen = []
    while proc.poll() is None:
        if progress.exists():
            seen.append(json.loads(progress.read_text()))
        time.sleep(0.2)
    out = proc.stdout.read()
    if progress.exists():  # its last state, written just before the module ended, may fall between two polls
        seen.append(json.loads(progress.read_text()))
    return json.loads((tmp_path / "tree" / "localhost").read_text()), seen, out


def test_a_pull_reports_progress_while_it_runs_and_returns_the_digest(standin, tmp_path):
    s = standin(OLLAMA_STANDIN_PULL_MS="3000")
    result, seen, out = pull(tmp_path, s.url, "qwen3:0.6b")
    assert result["changed"] and result["digest"] == s.get("/api/tags")["models"][0]["digest"], out
    running = [p for p in seen if not p["done"] and p["total"]]
    # rewritten about every second during 3 s: several distinct points, the first of them part way
    values = sorted({p["completed"] for p in running})
    assert len(values) >= 2 and values[0] < running[-1]["total"], seen
    assert seen[-1]["done"] and seen[-1]["completed"] == seen[-1]["total"] > 522653767  # weights + config


def test_a_model_from_the_fleets_registry_keeps_its_usual_name(standin, tmp_path):
    server = public_registry.make_server("127.0.0.1:0", tmp_path / "registry.log")
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        registry = f"127.0.0.1:{server.server_address[1]}"
        s = standin()
        source = ollama_registry_name("qwen3:0.6b", registry)
        result, _, out = pull(tmp_path, s.url, "qwen3:0.6b", source=source, insecure=True)
        assert result["changed"], out
        assert [m["name"] for m in s.get("/api/tags")["models"]] == ["qwen3:0.6b"]  # the registry's name is gone
        assert result["digest"] == public_registry.images()["qwen3:0.6b"][0].removeprefix("sha256:")
        missing, _, _ = pull(tmp_path, s.url, "mistral:7b", source=f"{registry}/library/mistral:7b", insecure=True)
        assert "is mistral:7b in ollama_registry_models?" in missing["msg"]
    finally:
        server.shutdown()


def test_a_failed_pull_says_what_and_where_and_marks_the_progress_done(standin, tmp_path):
    s = standin()
    result, seen, _ = pull(tmp_path, s.url, "no-such-model:1b")
    assert not result["changed"] and "pulling no-such-model:1b through http://127.0.0.1" in result["msg"]
    assert "file does not exist" in result["msg"] and seen[-1]["done"] and seen[-1]["error"]
