"""The fleet picture (plan.yml -e ollama_picture=…) as headless Chromium lays it out: GPU boxes sized by
memory and coloured by instance, estimate bars against each instance's VRAM and the headroom line."""

import re

import pytest
from helpers import browser
from test_plan_playbook import plan

MIB = 2**20
# An uneven host: one 80 GiB GPU, three 24 GiB ones, the last left without an instance.
GPUS = [
    {
        "index": 0,
        "uuid": "GPU-aaaaaaaa-0000-0000-0000-000000000000",
        "name": "NVIDIA A100-SXM4-80GB",
        "memory_total": 81920 * MIB,
    },
    {
        "index": 1,
        "uuid": "GPU-bbbbbbbb-0000-0000-0000-000000000001",
        "name": "NVIDIA GeForce RTX 4090",
        "memory_total": 24564 * MIB,
    },
    {
        "index": 2,
        "uuid": "GPU-bbbbbbbb-0000-0000-0000-000000000002",
        "name": "NVIDIA GeForce RTX 4090",
        "memory_total": 24564 * MIB,
    },
    {
        "index": 3,
        "uuid": "GPU-cccccccc-0000-0000-0000-000000000003",
        "name": "NVIDIA GeForce RTX 3090",
        "memory_total": 24576 * MIB,
    },
]
INSTANCES = [
    {"name": "big", "gpus": [0], "num_parallel": 2, "models": ["llama3.1:8b"]},
    {"name": "pair", "gpus": [1, 2], "models": ["qwen3:0.6b", "llama3.1:8b"]},
]


@pytest.fixture(scope="module")
def shown(tmp_path_factory):
    out = tmp_path_factory.mktemp("picture") / "plan.html"
    run = plan({"ollama_gpus": GPUS, "ollama_instances": INSTANCES, "ollama_picture": str(out)})
    assert run.returncode == 0, run.stdout[-3000:]
    with browser.page(out) as driver:
        yield driver, out.read_text()


def test_page_is_self_contained(shown):
    driver, html = shown
    assert not re.search(r"""(src|href)\s*=\s*["']?(https?:)?//""", html)
    assert "@import" not in html and "url(" not in html
    # what the browser actually loaded besides the page itself
    assert driver.execute_script("return performance.getEntriesByType('resource').length") == 0


def test_gpu_boxes_are_sized_by_memory(shown):
    driver, _ = shown
    boxes = driver.find_elements("css selector", "[data-host=gpu1] .gpu")
    assert [b.get_attribute("data-uuid") for b in boxes] == [g["uuid"] for g in GPUS]
    widths = [r["width"] - 8 for r in browser.rects(driver, "[data-host=gpu1] .gpu")]  # minus the padding
    for gpu, width in zip(GPUS, widths, strict=True):
        assert width / widths[1] == pytest.approx(gpu["memory_total"] / GPUS[1]["memory_total"], rel=0.02)
    assert widths[0] > 3 * widths[3]
    assert [b.text.split("\n")[:2] for b in boxes] == [
        ["GPU 0", "80.0 GiB"],
        ["GPU 1", "24.0 GiB"],
        ["GPU 2", "24.0 GiB"],
        ["GPU 3", "24.0 GiB"],
    ]


def test_gpus_take_their_instance_colour(shown):
    driver, _ = shown
    colour = {
        b.get_attribute("data-uuid"): b.value_of_css_property("background-color")
        for b in driver.find_elements("css selector", ".gpu")
    }
    card = {
        c.get_attribute("data-instance"): c.value_of_css_property("border-left-color")
        for c in driver.find_elements("css selector", ".instance")
    }
    assert colour[GPUS[0]["uuid"]] == card["big"]
    assert colour[GPUS[1]["uuid"]] == colour[GPUS[2]["uuid"]] == card["pair"]
    assert len({card["big"], card["pair"], colour[GPUS[3]["uuid"]]}) == 3  # the free GPU is neither
    assert driver.find_element("css selector", f"[data-uuid='{GPUS[3]['uuid']}']").text.endswith("unassigned")


def test_instances_show_port_and_settings(shown):
    driver, _ = shown
    big = driver.find_element("css selector", ".instance[data-instance=big]").text
    assert "big · :11435 · GPU 0 · 80.0 GiB" in big
    assert "parallel 2 · context 8192 · flash attention on · KV f16" in big
    pair = driver.find_element("css selector", ".instance[data-instance=pair]").text
    assert "pair · :11436 · GPUs 1-2 · 48.0 GiB" in pair


def test_estimate_bars_are_drawn_against_the_instance_vram(shown):
    driver, _ = shown
    for card in driver.find_elements("css selector", ".instance"):
        total = float(re.search(r"· ([\d.]+) GiB", card.text).group(1))
        models = card.find_elements("css selector", ".model")
        tracks = browser.rects(driver, ".track", card)
        bars = browser.rects(driver, ".bar.estimate", card)
        marks = browser.rects(driver, ".headroom", card)
        assert len(models) == len(tracks) == len(bars) == len(marks) > 0
        for model, track, bar, mark in zip(models, tracks, bars, marks, strict=True):
            estimate = float(re.search(r"estimated ([\d.]+) GiB", model.text).group(1))
            assert bar["width"] / track["width"] == pytest.approx(estimate / total, abs=0.01)
            assert (mark["x"] - track["x"]) / track["width"] == pytest.approx(0.90, abs=0.01)  # 10% headroom

    # the same model (llama3.1:8b) takes a larger share of the smaller instance's VRAM
    def share(instance):
        model = driver.find_element("css selector", f".instance[data-instance={instance}] [data-model='llama3.1:8b']")
        bar = model.find_element("xpath", "following-sibling::div[@class='track'][1]/div[contains(@class, 'estimate')]")
        return float(bar.get_attribute("data-pct"))

    assert share("pair") > share("big")
