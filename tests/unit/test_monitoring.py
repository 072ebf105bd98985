"""The alert rules (promtool test rules, against series labelled as the gateway labels them) and the Grafana
dashboard's queries (only series the gateway or dcgm-exporter export). multihost's test_operations.py runs
both against a real gateway scraped by a real Prometheus."""

import json
import re
import subprocess

from conftest import REPO
from helpers.day2 import dashboard_queries

FILES = REPO / "playbooks" / "files"
GATEWAY_JS = REPO / "roles" / "ollama_gateway" / "files" / "ollama_gateway.js"
MTAIL = REPO / "roles" / "ollama_gateway" / "templates" / "ollama-gateway.mtail.j2"
# dcgm-exporter's names (NVIDIA's GPU exporter), and Prometheus's own per-target series
FOREIGN = {"DCGM_FI_DEV_FB_USED", "DCGM_FI_DEV_GPU_UTIL", "DCGM_FI_DEV_GPU_TEMP", "up"}


def series_names(expr):
    """Metric names in a PromQL expression: identifiers that are not functions, keywords or label names."""
    words = set(
        re.findall(r"\b([A-Za-z_:][A-Za-z0-9_:]*)\b(?!\s*\()", re.sub(r'"[^"]*"|\{[^}]*\}|\[[^\]]*\]', " ", expr))
    )
    keywords = {"by", "on", "without", "group_left", "group_right", "or", "and", "unless", "ignoring", "bool"}
    keywords |= {"sum", "avg", "max", "min", "count", "stddev", "topk", "bottomk", "quantile", "count_values"}
    grouping = set(re.findall(r"\b(?:by|on|without|group_left|group_right|ignoring)\s*\(([^)]*)\)", expr))
    labels = {label.strip() for group in grouping for label in group.split(",")}
    return {w for w in words if w not in keywords | labels and not w.isdigit()}


def test_the_alert_rules_pass_promtool():
    check = subprocess.run(
        ["promtool", "check", "rules", str(FILES / "ollama-fleet-alerts.yml")], capture_output=True, text=True
    )
    assert check.returncode == 0, check.stdout + check.stderr
    test = subprocess.run(
        ["promtool", "test", "rules", "alerts_test.yml"],
        capture_output=True, text=True, cwd=REPO / "tests/unit/fixtures/prometheus",
    )  # fmt: skip
    assert test.returncode == 0, test.stdout + test.stderr
    assert "SUCCESS" in test.stdout


def request_families():
    """The per-request families: what the mtail program defines and what /metrics passes on from it (the
    router's REQUEST_FAMILIES), which must be the same; a histogram's series get their suffixes."""
    program = re.findall(r"^(counter|histogram) ([a-z_]+)", MTAIL.read_text(), re.M)
    passed = re.search(r"const REQUEST_FAMILIES = \{(.*?)\};", GATEWAY_JS.read_text(), re.S)[1]
    assert {name for _, name in program} == set(re.findall(r"^\s+([a-z_]+):", passed, re.M))
    return {
        name + suffix
        for kind, name in program
        for suffix in (["_bucket", "_sum", "_count"] if kind == "histogram" else [""])
    }


def test_every_series_the_dashboard_and_alerts_query_is_exported_by_the_gateway_or_dcgm_exporter():
    exported = set(re.findall(r"'((?:ollama|nginx)_[a-z_]+)'", GATEWAY_JS.read_text())) | request_families()
    rules = re.findall(r"expr: >-\n((?:\s{10}.*\n)+)|expr: (.*)", (FILES / "ollama-fleet-alerts.yml").read_text())
    exprs = dashboard_queries() + [block or line for block, line in rules]
    used = set().union(*(series_names(e) for e in exprs))
    assert "ollama_gateway_request_limit" in used and "DCGM_FI_DEV_FB_USED" in used
    assert "ollama_eval_total" in used and "ollama_gateway_time_to_first_token_seconds_bucket" in used
    assert used - exported - FOREIGN == set()


def test_the_dashboard_asks_for_its_datasource_and_filters_by_host():
    dashboard = json.loads((FILES / "ollama-fleet-dashboard.json").read_text())
    variables = {v["name"]: v for v in dashboard["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource" and variables["host"]["includeAll"]
    for panel in dashboard["panels"]:
        assert panel["datasource"] == {"type": "prometheus", "uid": "${datasource}"}, panel["title"]
    ids = [panel["id"] for panel in dashboard["panels"]]
    assert len(ids) == len(set(ids))
