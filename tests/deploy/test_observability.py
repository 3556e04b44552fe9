"""The shipped observability configs hold together: the Collector's pipelines, what it scrapes, the
spend dashboard, and the metrics contract in docs/operations.md that the services export."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest
import yaml
from prometheus_client.metrics import MetricWrapperBase

from gateway import observability as gateway_metrics
from kit import metrics as kit_metrics
from services.generation import metrics as generation_metrics
from services.ledger import metrics as ledger_metrics
from services.workflow import metrics as workflow_metrics
from tests.deploy.conftest import DEPLOY, OVERLAYS, ROOT, Manifest, generated, named, of_kind, pod_spec

COLLECTOR = DEPLOY / "otel-collector.yaml"
DASHBOARD = DEPLOY / "grafana" / "spend-dashboard.json"
OPERATIONS = ROOT / "docs" / "operations.md"
METRIC_MODULES = (kit_metrics, gateway_metrics, ledger_metrics, generation_metrics, workflow_metrics)
METRIC = re.compile(r"\batelier_[a-z_]+")
CONTRACT_ROW = re.compile(
    r"^\| `(atelier_[a-z_]+)` \| (\w+) \| (.*?) \| (.*?) \| (exported|planned) \|$", re.M
)


def collector_config() -> dict[str, Any]:
    config: dict[str, Any] = yaml.safe_load(COLLECTOR.read_text())
    return config


def contract() -> dict[str, tuple[str, set[str], str]]:
    """metric name -> (type, labels, status) from the table in docs/operations.md."""
    rows = {}
    for name, kind, labels, _exporter, status in CONTRACT_ROW.findall(OPERATIONS.read_text()):
        # Labels are the backticked words of the cell, outside any parenthesised explanation.
        rows[name] = (kind, set(re.findall(r"`([a-z_]+)`", re.sub(r"\(.*?\)", "", labels))), status)
    return rows


def test_the_collector_config_is_the_one_deployed(rendered: dict[str, list[Manifest]]) -> None:
    assert COLLECTOR.is_symlink(), "deploy/otel-collector.yaml links to the base's file (one source)"
    for overlay in OVERLAYS:
        config_map = generated(rendered[overlay], "ConfigMap", "otel-collector-config")
        assert config_map["data"]["otel-collector.yaml"] == COLLECTOR.read_text()


def test_every_pipeline_component_is_defined_and_used() -> None:
    config = collector_config()
    service = config["service"]
    used: dict[str, set[str]] = {"receivers": set(), "processors": set(), "exporters": set()}
    for name, pipeline in service["pipelines"].items():
        assert pipeline["receivers"], name
        assert pipeline["exporters"], name
        for section in used:
            for component in pipeline.get(section, []):
                assert component in config[section], (
                    f"pipeline {name} uses undefined {section[:-1]} {component}"
                )
                used[section].add(component)
    for section, names in used.items():
        assert set(config[section]) == names, f"defined but unused {section}: {set(config[section]) - names}"
    assert set(service["extensions"]) == set(config["extensions"])
    traces = service["pipelines"]["traces"]["processors"]
    assert traces[0] == "memory_limiter"
    assert traces[-1] == "batch"
    assert "attributes/scrub" in traces


def test_the_collector_listens_where_the_manifests_point(rendered: dict[str, list[Manifest]]) -> None:
    config = collector_config()
    protocols = config["receivers"]["otlp"]["protocols"]
    assert protocols["grpc"]["endpoint"] == "0.0.0.0:4317"
    assert protocols["http"]["endpoint"] == "0.0.0.0:4318"
    health_port = int(config["extensions"]["health_check"]["endpoint"].rsplit(":", 1)[1])
    used_env = set(re.findall(r"\$\{env:([A-Z_]+)\}", COLLECTOR.read_text()))
    for overlay in OVERLAYS:
        manifests = rendered[overlay]
        deployment = named(manifests, "Deployment", "otel-collector")
        (container,) = pod_spec(deployment)["containers"]
        ports = {p["name"]: p["containerPort"] for p in container["ports"]}
        assert ports == {"otlp-grpc": 4317, "otlp-http": 4318, "health": health_port}
        assert container["args"] == ["--config=/conf/otel-collector.yaml"]
        env = generated(manifests, "ConfigMap", "otel-collector-env")["data"]
        assert used_env <= set(env) | {e["name"] for e in container.get("env", [])}
        atelier = generated(manifests, "ConfigMap", "atelier-config")["data"]
        host, port = atelier["ATELIER_OTEL_ENDPOINT"].removeprefix("http://").split(":")
        service_ports = {p["port"] for p in named(manifests, "Service", host)["spec"]["ports"]}
        assert int(port) in service_ports


def test_the_collector_scrapes_every_process(rendered: dict[str, list[Manifest]]) -> None:
    jobs = {
        j["job_name"]: j for j in collector_config()["receivers"]["prometheus"]["config"]["scrape_configs"]
    }

    def kept_port_name(job: dict[str, Any]) -> str:
        rule = next(
            r
            for r in job["relabel_configs"]
            if r["source_labels"] == ["__meta_kubernetes_pod_container_port_name"]
        )
        assert rule["action"] == "keep"
        return str(rule["regex"])

    assert "OpenMetricsText1.0.0" in jobs["atelier"]["scrape_protocols"], "exemplars need OpenMetrics"
    for deployment in of_kind(rendered["prod"], "Deployment"):
        name = deployment["metadata"]["name"]
        if name == "otel-collector":
            continue
        template = deployment["spec"]["template"]
        assert template["metadata"]["annotations"]["prometheus.io/scrape"] == "true", name
        (container,) = template["spec"]["containers"]
        port_names = {p["name"] for p in container["ports"]}
        assert kept_port_name(jobs["atelier"]) in port_names, name
        metrics_port = next(p["containerPort"] for p in container["ports"] if p["name"] == "metrics")
        config = generated(rendered["prod"], "ConfigMap", "atelier-config")["data"]
        assert int(config["ATELIER_METRICS_PORT"]) == metrics_port
    assert set(jobs) == {"atelier", "postgres"}, "one job per kind of pod: nothing is scraped twice"
    # NATS: the exporter beside each node, scraped by the same job, reachable from the collector.
    nats = named(rendered["prod"], "StatefulSet", "nats")["spec"]["template"]
    assert nats["metadata"]["annotations"]["prometheus.io/scrape"] == "true"
    exporter = next(c for c in nats["spec"]["containers"] if c["name"] == "exporter")
    assert [p["name"] for p in exporter["ports"]] == [kept_port_name(jobs["atelier"])]
    assert "-jsz=all" in exporter["args"]


def exported_metrics() -> dict[str, tuple[str, set[str], str]]:
    """metric name -> (type, labels, module) of every metric the processes define at import."""
    found: dict[str, tuple[str, set[str], str]] = {}
    for module in METRIC_MODULES:
        for metric in vars(module).values():
            if isinstance(metric, MetricWrapperBase):
                assert metric._type is not None
                name = metric._name + ("_total" if metric._type == "counter" else "")
                found[name] = (metric._type, set(metric._labelnames), module.__name__)
    return found


def test_the_contract_names_every_metric_the_processes_export() -> None:
    rows = contract()
    exported = exported_metrics()
    assert any(module == "kit.metrics" for _, _, module in exported.values()), "kit defines no metric"
    for name, (kind, labels, module) in exported.items():
        if name.startswith("atelier_workflow_"):
            continue  # the workflow's own counters, documented in docs/services/workflow.md
        assert name in rows, f"{name} is exported by {module} but missing from docs/operations.md"
        assert rows[name] == (kind, labels, "exported"), name
    for name, (_kind, _labels, status) in rows.items():
        assert status == "exported", f"{name} is still planned"
        assert name in exported, f"{name} is marked exported but no process defines it"


def dashboard_targets() -> list[tuple[dict[str, Any], dict[str, Any]]]:
    board = json.loads(DASHBOARD.read_text())
    return [(panel, target) for panel in board["panels"] for target in panel.get("targets", [])]


def test_the_dashboard_uses_only_contract_metrics() -> None:
    rows = contract()
    for panel, target in dashboard_targets():
        for name in METRIC.findall(target["expr"]):
            base = re.sub(r"_(bucket|sum|count)$", "", name)
            assert base in rows, f"panel {panel['title']!r} uses {name}, which is not in the metrics contract"
            if base != name:
                assert rows[base][0] == "histogram", name
        assert target["datasource"] == {"type": "prometheus", "uid": "${datasource}"}


@pytest.mark.parametrize(
    ("what", "pattern"),
    [
        ("credits captured per model", r"sum by \(model\) \(rate\(atelier_credits_captured_milli_total"),
        ("refunds", r"rate\(atelier_credits_refunded_milli_total"),
        ("failed-task rate", r'atelier_tasks_completed_total\{[^}]*status="failed"'),
        ("callback rejections", r'atelier_callbacks_total\{outcome="rejected"\}\[\$__rate_interval\]'),
    ],
)
def test_the_dashboard_shows_spend_with_exemplars(what: str, pattern: str) -> None:
    over_time = [
        (panel, target)
        for panel, target in dashboard_targets()
        if panel["type"] == "timeseries" and re.search(pattern, target["expr"])
    ]
    assert over_time, f"no time series panel for {what}"
    assert all(target["exemplar"] is True for _, target in over_time), f"{what}: exemplars off"


def test_the_dashboard_is_importable() -> None:
    board = json.loads(DASHBOARD.read_text())
    assert board["uid"] == "atelier-spend"
    ids = [panel["id"] for panel in board["panels"]]
    assert len(ids) == len(set(ids))
    for panel in board["panels"]:
        grid = panel["gridPos"]
        assert grid["x"] + grid["w"] <= 24, panel["title"]
    variables = {v["name"]: v for v in board["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource"
    for _, target in dashboard_targets():
        if "$model" in target["expr"]:
            assert "model" in variables


def test_exemplars_open_traces() -> None:
    """The exemplar label the services use (trace_id) is the one Grafana turns into a trace link."""
    datasources = yaml.safe_load((DEPLOY / "grafana" / "datasources.yaml").read_text())["datasources"]
    prometheus = next(d for d in datasources if d["type"] == "prometheus")
    tempo = next(d for d in datasources if d["type"] == "tempo")
    (destination,) = prometheus["jsonData"]["exemplarTraceIdDestinations"]
    assert destination == {"name": "trace_id", "datasourceUid": tempo["uid"]}
    assert '{"trace_id":' in OPERATIONS.read_text().replace(" ", "").replace("\n", "")
