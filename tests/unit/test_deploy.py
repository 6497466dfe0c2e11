"""deploy/: the Kubernetes manifests against the Kubernetes schemas (offline), the compose file's
structure, and the Grafana dashboard's queries against the metrics a worker exposes."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from pipeline.observe.metrics import Metrics
from pipeline.settings import settings_doc

pytestmark = pytest.mark.unit

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"
KUBERNETES_VERSION = "1.30"
KAFKA_CLIENT_SETTINGS = {"VTSTREAM_KAFKA_BOOTSTRAP", "VTSTREAM_KAFKA_SECURITY_PROTOCOL", "VTSTREAM_KAFKA_SASL_MECHANISM",
                         "VTSTREAM_KAFKA_SASL_USERNAME", "VTSTREAM_KAFKA_SASL_PASSWORD_FILE", "VTSTREAM_KAFKA_SSL_CAFILE"}


def _manifests() -> list[dict[str, Any]]:
    docs = []
    for path in sorted((DEPLOY / "kubernetes").glob("*.yaml")):
        docs += [doc for doc in yaml.safe_load_all(path.read_text()) if doc]
    return docs


def _kind(kind: str) -> list[dict[str, Any]]:
    return [doc for doc in _manifests() if doc["kind"] == kind]


def test_every_manifest_is_valid_against_the_kubernetes_schema() -> None:
    docs = _manifests()
    assert {doc["kind"] for doc in docs} >= {"StatefulSet", "Service", "PodDisruptionBudget", "Secret"}
    for doc in docs:
        kubernetes_validate.validate(doc, KUBERNETES_VERSION, strict=True)


def test_workers_have_probes_secrets_requests_and_scrape_annotations() -> None:
    (workers,) = _kind("StatefulSet")
    pod = workers["spec"]["template"]
    (worker,) = [c for c in pod["spec"]["containers"] if c["name"] == "worker"]
    port = {p["name"]: p["containerPort"] for p in worker["ports"]}["web"]
    assert worker["livenessProbe"]["httpGet"] == {"path": "/health", "port": "web"}
    assert worker["readinessProbe"]["httpGet"] == {"path": "/ready", "port": "web"}
    annotations = pod["metadata"]["annotations"]
    assert annotations["prometheus.io/scrape"] == "true" and annotations["prometheus.io/port"] == str(port)
    assert annotations["prometheus.io/path"] == "/metrics"
    env = {e["name"]: e for e in worker["env"]}
    assert env["VTSTREAM_WEB_PORT"]["value"] == str(port)
    assert "value" not in env["VTSTREAM_VT_API_KEY"] and env["VTSTREAM_VT_API_KEY"]["valueFrom"]["secretKeyRef"]
    assert KAFKA_CLIENT_SETTINGS <= set(env) and "VTSTREAM_KAFKA_SASL_PASSWORD" not in env
    password_dir = str(Path(env["VTSTREAM_KAFKA_SASL_PASSWORD_FILE"]["value"]).parent)
    (mount,) = [m for m in worker["volumeMounts"] if m["mountPath"] == password_dir]
    (volume,) = [v for v in pod["spec"]["volumes"] if v["name"] == mount["name"]]
    secret_names = {s["metadata"]["name"] for s in _kind("Secret")}
    assert volume["secret"]["secretName"] in secret_names
    assert env["VTSTREAM_VT_API_KEY"]["valueFrom"]["secretKeyRef"]["name"] in secret_names
    for container in pod["spec"]["containers"] + pod["spec"].get("initContainers", []):
        assert {"cpu", "memory"} <= set(container["resources"]["requests"]), container["name"]
    (budget,) = _kind("PodDisruptionBudget")
    assert budget["spec"]["selector"] == workers["spec"]["selector"]


def test_compose_runs_kraft_kafka_with_sasl_ssl_workers_ready_checks_and_prometheus() -> None:
    compose = yaml.safe_load((DEPLOY / "docker-compose.yml").read_text())
    services = compose["services"]
    assert services["kafka"]["image"].startswith("apache/kafka:")
    kafka = dict(line.split("=", 1) for line in (DEPLOY / "kafka" / "server.properties").read_text().splitlines()
                 if line and not line.startswith("#"))  # the properties file the kafka service runs
    assert "controller" in kafka["process.roles"] and "zookeeper.connect" not in kafka
    protocols = dict(pair.split(":") for pair in kafka["listener.security.protocol.map"].split(","))
    (client,) = [a for a in kafka["advertised.listeners"].split(",") if a.startswith("CLIENT://")]
    assert protocols["CLIENT"] == "SASL_SSL"
    port = client.rsplit(":", 1)[1]

    worker = services["worker"]
    env = worker["environment"]
    assert KAFKA_CLIENT_SETTINGS <= set(env)
    assert env["VTSTREAM_KAFKA_SECURITY_PROTOCOL"] == "SASL_SSL"
    assert env["VTSTREAM_KAFKA_BOOTSTRAP"] == f"kafka:{port}"
    assert env["VTSTREAM_KAFKA_SASL_MECHANISM"] in kafka["listener.name.client.sasl.enabled.mechanisms"].split(",")
    secret = Path(env["VTSTREAM_KAFKA_SASL_PASSWORD_FILE"]).name
    assert secret in worker["secrets"] and secret in compose["secrets"]
    assert "/ready" in " ".join(worker["healthcheck"]["test"])
    assert env["VTSTREAM_WEB_PORT"] in " ".join(worker["healthcheck"]["test"])

    assert "prometheus" in services and "grafana" in services
    scrape = yaml.safe_load((DEPLOY / "prometheus.yml").read_text())["scrape_configs"]
    (job,) = scrape
    assert job["metrics_path"] == "/metrics"
    assert job["dns_sd_configs"][0]["names"] == ["worker"] and str(job["dns_sd_configs"][0]["port"]) == env[
        "VTSTREAM_WEB_PORT"]


def _exposed_names() -> set[str]:
    """Every sample name a worker can expose (counters' _total, histograms' series, gauges)."""
    names: set[str] = set()
    for family in Metrics().registry.collect():
        if family.type == "counter":
            names.add(family.name + "_total")
        elif family.type == "histogram":
            names.update(family.name + suffix for suffix in ("_bucket", "_sum", "_count"))
        else:
            names.add(family.name)
    return names


def test_the_dashboard_has_the_panels_and_queries_only_metrics_that_exist() -> None:
    dashboard = json.loads((DEPLOY / "grafana" / "vtstream-dashboard.json").read_text())
    titles = " | ".join(panel["title"].lower() for panel in dashboard["panels"])
    for topic in ("throughput", "cache hit rate", "virustotal calls", "quota left", "parked", "dead letters",
                  "lag", "enrich latency"):
        assert topic in titles, topic
    exposed = _exposed_names()
    queried = {name for panel in dashboard["panels"] for target in panel["targets"]
               for name in re.findall(r"\bvtstream_\w+", target["expr"])}
    assert queried and queried <= exposed, queried - exposed


def test_every_vtstream_variable_the_deployments_set_is_a_setting() -> None:
    known = {env for env, _, _ in settings_doc()}
    compose = yaml.safe_load((DEPLOY / "docker-compose.yml").read_text())
    names = {name for service in compose["services"].values()
             for name in (service.get("environment") or {}) if name.startswith("VTSTREAM_")}
    for workers in _kind("StatefulSet"):
        spec = workers["spec"]["template"]["spec"]
        names |= {e["name"] for c in spec["containers"] + spec.get("initContainers", []) for e in c.get("env", [])}
    assert KAFKA_CLIENT_SETTINGS <= names
    assert names <= known, names - known
