"""nvidia-smi CSV → the gpu_facts schema, on the output of real GPU models."""

import pytest
from ansible.errors import AnsibleFilterError
from conftest import FIXTURES
from ollama_gpus import ollama_gpus_from_nvidia_smi

SMI = FIXTURES / "nvidia-smi"
MIB = 2**20


def parse(name, **kw):
    return ollama_gpus_from_nvidia_smi((SMI / f"{name}.csv").read_text(), **kw)


def test_eight_l20s():
    gpus = parse("l20x8")
    assert [g["index"] for g in gpus] == list(range(8))
    assert {g["name"] for g in gpus} == {"NVIDIA L20"}
    assert gpus[0] == {
        "index": 0,
        "uuid": "GPU-0f08811b-d814-586e-aaf1-d9315f58d54d",
        "name": "NVIDIA L20",
        "memory_total": 49140 * MIB,
        "memory_free": 48532 * MIB,
        "pci_bus_id": "00000000:18:00.0",
        "compute_capability": "8.9",
        "mig_mode": None,
        "mig_devices": [],
    }


def test_a100s_report_mig_capable_but_off():
    gpus = parse("a100x4")
    assert len(gpus) == 4 and {g["mig_mode"] for g in gpus} == {False}
    assert {g["memory_total"] for g in gpus} == {81920 * MIB} and {g["compute_capability"] for g in gpus} == {"8.0"}


def test_mixed_host_keeps_each_gpus_own_memory_and_capability():
    gpus = parse("mixed")
    assert [(g["name"], g["memory_total"] // MIB, g["compute_capability"]) for g in gpus] == [
        ("NVIDIA GeForce RTX 4090", 24564, "8.9"),
        ("NVIDIA GeForce RTX 4090", 24564, "8.9"),
        ("NVIDIA GeForce RTX 3090", 24576, "8.6"),
    ]


def test_mig_devices_come_from_nvidia_smi_list():
    (h100,) = parse("h100-mig", list_output=(SMI / "h100-mig.list").read_text())
    assert h100["mig_mode"] is True
    assert [(m["index"], m["profile"], m["memory_total"] // 2**30) for m in h100["mig_devices"]] == [
        (0, "3g.40gb", 40),
        (1, "2g.20gb", 20),
        (2, "2g.20gb", 20),
    ]
    assert h100["mig_devices"][0]["uuid"] == "MIG-372ff304-35ee-5c0d-b3c0-5215fce273f5"


@pytest.mark.parametrize(
    "text, message",
    [
        ("0, GPU-x, NVIDIA L20", "expected 9 comma-separated values"),
        ("0, GPU-x, NVIDIA L20, [N/A], 1, 0:0, 8.9, [N/A], 1", "memory.total is '[N/A]'"),
        (42, "input must be the CSV text"),
    ],
)
def test_malformed_output_is_rejected_with_the_line(text, message):
    with pytest.raises(AnsibleFilterError, match=message.replace("[", r"\[").replace("]", r"\]")):
        ollama_gpus_from_nvidia_smi(text)


def test_query_without_the_needed_fields_is_rejected():
    with pytest.raises(AnsibleFilterError, match="needs the fields uuid, memory.total"):
        ollama_gpus_from_nvidia_smi("0, L20", fields=["index", "name"])


def test_minor_numbers_from_nvidia_smi_query():
    """`nvidia-smi -q` is where the fallback finds the N of /dev/nvidiaN (no --query-gpu field has it)."""
    from ansible_collections.ollama.fleet.plugins.module_utils.gpu_inventory import minor_numbers_from_query

    text = """
==============NVSMI LOG==============

Driver Version                            : 570.133.20
Attached GPUs                             : 2
GPU 00000000:18:00.0
    Product Name                          : NVIDIA L20
    Minor Number                          : 3
    MIG Mode
        Current                           : N/A

GPU 00000000:9A:00.0
    Product Name                          : NVIDIA L20
    Minor Number                          : N/A
"""
    assert minor_numbers_from_query(text) == {"00000000:18:00.0": 3, "00000000:9A:00.0": None}
