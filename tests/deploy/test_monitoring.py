"""The chart's PrometheusRule and Grafana dashboard query only metrics (and labels) the daemon
exports (dra_framework/metrics.py), and alert on each problem docs/install.md names."""
from __future__ import annotations

import json
import re

import pytest

from chart import by_kind, one, render

#: Labels Prometheus adds from the scrape target (the ServiceMonitor's relabeling adds node).
TARGET_LABELS = {"namespace", "pod", "node", "job", "instance", "service", "endpoint", "container", "le"}
#: Prometheus/Grafana template variables and functions that look like label names.
NOT_LABELS = {"by", "on", "without", "ignoring", "group_left", "group_right"}


def exported() -> dict[str, set[str]]:
    """Sample name -> label names of every metric in the daemon's registry."""
    from dra_framework.metrics import REGISTRY

    out: dict[str, set[str]] = {}
    for fam in REGISTRY.collect():
        collector = REGISTRY._names_to_collectors.get(fam.name) or REGISTRY._names_to_collectors.get(f"{fam.name}_total")
        labels = set(getattr(collector, "_labelnames", ()))
        suffixes = {"counter": ["_total", "_created"], "histogram": ["_bucket", "_count", "_sum", "_created"],
                    "gauge": [""], "summary": ["", "_count", "_sum"]}[fam.type]
        for s in suffixes:
            out[fam.name + s] = labels | ({"le"} if s == "_bucket" else set())
    return out


def queries() -> dict[str, str]:
    objs = render(sets=["metrics.prometheusRule.enabled=true", "metrics.grafanaDashboard.enabled=true"])
    rule = one(objs, "PrometheusRule")
    out = {r["alert"]: r["expr"] for g in rule["spec"]["groups"] for r in g["rules"]}
    dash = json.loads(next(c for c in by_kind(objs, "ConfigMap") if "dra-framework.json" in c["data"])
                      ["data"]["dra-framework.json"])
    for p in dash["panels"]:
        for t in p["targets"]:
            out[f"panel {p['title']} {t['refId']}"] = t["expr"]
    for v in dash["templating"]["list"]:
        if v.get("type") == "query":
            out[f"variable {v['name']}"] = v["query"]
    return out


def test_queries_use_exported_metric_names_and_labels(helm_bin):
    metrics = exported()
    seen: set[str] = set()
    for where, expr in queries().items():
        names = set(re.findall(r"\bdra_framework_[a-z_]+\b", expr))
        assert names, f"{where}: no dra_framework metric in {expr!r}"
        unknown = names - set(metrics)
        assert not unknown, f"{where}: {sorted(unknown)} not exported by dra_framework/metrics.py"
        seen |= names
        allowed = set().union(*(metrics[n] for n in names)) | TARGET_LABELS
        used = set(re.findall(r"(?:[{,]\s*)([a-z_]+)\s*(?:=~|!=|=)", expr))
        used |= {x.strip() for grp in re.findall(r"\b(?:by|on)\s*\(([^)]*)\)", expr) for x in grp.split(",") if x.strip()}
        used |= set(re.findall(r"label_values\([^,]+,\s*([a-z_]+)\)", expr))
        assert used - NOT_LABELS <= allowed, f"{where}: labels {sorted(used - allowed)} not on {sorted(names)}"
    # Every exported metric family is on the dashboard or in an alert.
    families = {n for n in metrics if not n.endswith("_created")}
    by_family = {re.sub(r"_(bucket|count|sum)$", "", n) for n in families}
    used_family = {re.sub(r"_(bucket|count|sum)$", "", n) for n in seen}
    assert by_family <= used_family, f"not shown anywhere: {sorted(by_family - used_family)}"


@pytest.mark.parametrize("alert, metric", [
    ("DRAFrameworkPrepareErrors", "dra_framework_operation_errors_total"),
    ("DRAFrameworkPrepareSlow", "dra_framework_operation_duration_seconds_bucket"),
    ("DRAFrameworkUnhealthyDevices", "dra_framework_unhealthy_devices"),
    ("DRAFrameworkCheckpointProblem", "dra_framework_checkpoint_problems_total"),
    ("DRAFrameworkAPIServerUnreachable", "dra_framework_api_server_reachable"),
])
def test_alerts_cover_the_documented_problems(helm_bin, alert, metric):
    assert metric in queries()[alert]
