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
from pipeline.settings import Settings, settings_doc
from topics import RAW

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
    assert {doc["kind"] for doc in docs} >= {"StatefulSet", "Service", "PodDisruptionBudget", "Secret", "NetworkPolicy"}
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
    assert KAFKA_CLIENT_SETTINGS <= set(env)
    (budget,) = _kind("PodDisruptionBudget")
    assert budget["spec"]["selector"] == workers["spec"]["selector"]
    for container in pod["spec"]["containers"] + pod["spec"].get("initContainers", []):
        assert {"cpu", "memory"} <= set(container["resources"]["requests"]), container["name"]


def _group(pattern: str, text: str) -> str:
    """The first group of ``pattern``'s first match in ``text`` (multi-line: ``^`` starts any line)."""
    match = re.search(pattern, text, re.M)
    assert match, pattern
    return match[1]


def _worker_pod() -> tuple[dict[str, Any], dict[str, Any], list[dict[str, Any]]]:
    (workers,) = _kind("StatefulSet")
    spec = workers["spec"]["template"]["spec"]
    return workers, spec, spec["containers"] + spec.get("initContainers", [])


def test_the_key_and_the_kafka_password_are_mounted_files_never_environment_values():
    _, spec, containers = _worker_pod()
    secret_names = {s["metadata"]["name"] for s in _kind("Secret")}
    for container in containers:
        env = {e["name"]: e for e in container.get("env", [])}
        assert "VTSTREAM_VT_API_KEY" not in env and "VTSTREAM_KAFKA_SASL_PASSWORD" not in env, container["name"]
        assert not any("valueFrom" in e for e in env.values()), container["name"]  # no secret as a variable
        for variable in ("VTSTREAM_VT_API_KEY_FILE", "VTSTREAM_KAFKA_SASL_PASSWORD_FILE"):
            if variable not in env:
                continue
            path = Path(env[variable]["value"])
            (mount,) = [m for m in container["volumeMounts"] if m["mountPath"] == str(path.parent)]
            (volume,) = [v for v in spec["volumes"] if v["name"] == mount["name"]]
            assert mount.get("readOnly") is True and volume["secret"]["secretName"] in secret_names
            assert path.name in {item["path"] for item in volume["secret"]["items"]}
    worker = next(c for c in containers if c["name"] == "worker")
    assert {"VTSTREAM_VT_API_KEY_FILE", "VTSTREAM_KAFKA_SASL_PASSWORD_FILE"} <= {e["name"] for e in worker["env"]}


def test_every_container_runs_hardened():
    """Non-root with a numeric UID (the image's), read-only root filesystem, no capability, the runtime's
    seccomp profile, no privilege escalation, no service account token."""
    _, spec, containers = _worker_pod()
    pod = spec["securityContext"]
    dockerfile = (DEPLOY / "Dockerfile").read_text()
    uid = int(_group(r"^USER (\d+)", dockerfile))
    assert f"--uid {uid}" in dockerfile
    assert pod["runAsNonRoot"] is True and pod["runAsUser"] == uid and pod["seccompProfile"] == {"type": "RuntimeDefault"}
    assert spec["automountServiceAccountToken"] is False
    for container in containers:
        context = container["securityContext"]
        assert context["runAsNonRoot"] is True and isinstance(context["runAsUser"], int) and context["runAsUser"] != 0
        assert context["readOnlyRootFilesystem"] is True and context["allowPrivilegeEscalation"] is False
        assert context["capabilities"] == {"drop": ["ALL"]} and context["seccompProfile"]["type"] == "RuntimeDefault"
        assert not context.get("privileged")


def test_the_only_writable_volume_is_the_data_dir():
    workers, _, containers = _worker_pod()
    claims = {claim["metadata"]["name"] for claim in workers["spec"].get("volumeClaimTemplates", [])}
    for container in containers:
        env = {e["name"]: e.get("value") for e in container.get("env", [])}
        writable = [m for m in container.get("volumeMounts", []) if not m.get("readOnly")]
        if container["name"] == "worker":
            assert [m["mountPath"] for m in writable] == [env["VTSTREAM_DATA_DIR"]]
            assert writable[0]["name"] in claims
        else:
            assert writable == [], container["name"]


def test_images_are_pinned_releases_never_latest():
    _, _, containers = _worker_pod()
    version = _group(r'^version = "([^"]+)"', (DEPLOY.parent / "pyproject.toml").read_text())
    for container in containers:
        image = container["image"]
        name, _, tag = image.rpartition(":")
        assert name and tag and tag != "latest" and "/" not in tag, image
        assert tag == version or "@sha256:" in image, (image, version)


def test_a_network_policy_limits_who_reaches_the_workers_and_what_they_reach():
    workers, spec, _ = _worker_pod()
    (policy,) = [p for p in _kind("NetworkPolicy") if p["spec"]["podSelector"] == workers["spec"]["selector"]]
    body = policy["spec"]
    assert body["podSelector"] == workers["spec"]["selector"] and sorted(body["policyTypes"]) == ["Egress", "Ingress"]
    worker = next(c for c in spec["containers"] if c["name"] == "worker")
    web = {p["name"]: p["containerPort"] for p in worker["ports"]}["web"]
    (ingress,) = body["ingress"]
    assert ingress["ports"] == [{"protocol": "TCP", "port": web}]
    (source,) = ingress["from"]
    assert source == {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "monitoring"}}}
    egress_ports = {(p["protocol"], p["port"]) for rule in body["egress"] for p in rule["ports"]}
    env = {e["name"]: e.get("value") for e in worker["env"]}
    kafka_port = int(env["VTSTREAM_KAFKA_BOOTSTRAP"].rsplit(":", 1)[1])
    assert egress_ports == {("UDP", 53), ("TCP", 53), ("TCP", kafka_port), ("TCP", 443)}
    assert env["VTSTREAM_VT_BASE_URL"].startswith("https://")
    (https,) = [rule for rule in body["egress"] if rule["ports"] == [{"protocol": "TCP", "port": 443}]]
    (block,) = [peer["ipBlock"] for peer in https["to"]]
    assert {"10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "169.254.0.0/16"} <= set(block["except"])


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
    for name in ("prometheus", "grafana"):  # on this machine only: Grafana lets anyone in as a viewer
        assert services[name]["ports"] and all(str(p).startswith("127.0.0.1:") for p in services[name]["ports"])
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
    for cronjob in _kind("CronJob"):
        spec = cronjob["spec"]["jobTemplate"]["spec"]["template"]["spec"]
        names |= {e["name"] for c in spec["containers"] for e in c.get("env", [])}
    assert KAFKA_CLIENT_SETTINGS <= names
    assert names <= known, names - known


def test_compose_vtstream_containers_mount_only_the_ca_and_run_without_privileges():
    compose = yaml.safe_load((DEPLOY / "docker-compose.yml").read_text())
    services = compose["services"]
    certs = services["certs"]
    script = " ".join(certs["command"])
    key_volume = next(v.split(":")[0] for v in certs["volumes"] if v.split(":")[1] == "/certs")
    ca_volume = next(v.split(":")[0] for v in certs["volumes"] if v.split(":")[1] != "/certs")
    ca_dir = next(v.split(":")[1] for v in certs["volumes"] if v.split(":")[0] == ca_volume)
    assert f"cp ca.crt {ca_dir}/ca.crt" in script and "key" not in script.split(f"cp ca.crt {ca_dir}")[1].split("\n")[0]
    for name in ("worker", "topics"):
        service = services[name]
        sources = [v.split(":")[0] for v in service.get("volumes", [])]
        assert key_volume not in sources and sources == [ca_volume], (name, sources)
        cafile = service["environment"]["VTSTREAM_KAFKA_SSL_CAFILE"]
        assert any(cafile.startswith(v.split(":")[1] + "/") and v.endswith(":ro") for v in service["volumes"])
    worker = services["worker"]
    assert worker["read_only"] is True and worker["cap_drop"] == ["ALL"]
    assert "no-new-privileges:true" in worker["security_opt"]
    assert any(t.startswith("/var/lib/vtstream") for t in worker["tmpfs"])  # the image's VTSTREAM_DATA_DIR


def _retrohunt() -> dict[str, Any]:
    (cronjob,) = _kind("CronJob")
    return cronjob


def test_the_retrohunt_cronjob_runs_the_replay_once_a_day_on_a_date_named_run_with_a_budget_setting() -> None:
    from click.testing import CliRunner

    from pipeline.cli.replay import replay_command

    cronjob = _retrohunt()
    spec = cronjob["spec"]
    minute, hour, day, month, weekday = spec["schedule"].split()
    assert minute.isdigit() and hour.isdigit() and (day, month, weekday) == ("*", "*", "*"), "once a day"
    assert spec["timeZone"] == "Etc/UTC" and spec["concurrencyPolicy"] == "Forbid"
    job = spec["jobTemplate"]["spec"]
    pod = job["template"]["spec"]
    (container,) = pod["containers"]
    args, env = container["args"], {e["name"]: e for e in container["env"]}
    assert args[:7] == ["replay", "--topic", RAW, "--from", "7d", "--max-age", "1d"]
    options = dict(zip(args[1::2], args[2::2]))
    assert options["--run"] == "retrohunt-{date}"  # the date names the run: a retried job resumes it
    assert options["--budget"] == "$(VTSTREAM_RETROHUNT_BUDGET)" and "VTSTREAM_RETROHUNT_BUDGET" in env
    # the budget is a share the settings accept, and even every retry spending it leaves the live lane most
    share = Settings.from_env({"VTSTREAM_RETROHUNT_BUDGET": env["VTSTREAM_RETROHUNT_BUDGET"]["value"]}).replay
    assert share.retrohunt_budget.fraction * (1 + job["backoffLimit"]) < 0.5
    assert KAFKA_CLIENT_SETTINGS <= set(env) and "VTSTREAM_VT_DAILY_QUOTA" in env
    password_dir = str(Path(env["VTSTREAM_KAFKA_SASL_PASSWORD_FILE"]["value"]).parent)
    (mount,) = [m for m in container["volumeMounts"] if m["mountPath"] == password_dir]
    (volume,) = [v for v in pod["volumes"] if v["name"] == mount["name"]]
    assert volume["secret"]["secretName"] in {s["metadata"]["name"] for s in _kind("Secret")}
    assert {"cpu", "memory"} <= set(container["resources"]["requests"])
    # as hardened as a worker, and none of the workers' selectors (Service, PDB, policy) picks its pods
    context, labels = container["securityContext"], job["template"]["metadata"]["labels"]
    assert pod["securityContext"]["runAsNonRoot"] is True and pod["automountServiceAccountToken"] is False
    assert context["readOnlyRootFilesystem"] is True and context["allowPrivilegeEscalation"] is False
    assert context["capabilities"] == {"drop": ["ALL"]} and context["runAsUser"] != 0
    for doc in _kind("StatefulSet") + _kind("PodDisruptionBudget") + _kind("NetworkPolicy"):
        selector = doc["spec"].get("selector") or doc["spec"]["podSelector"]
        if doc["metadata"]["name"] != "vtstream-retrohunt":
            assert not selector["matchLabels"].items() <= labels.items(), doc["metadata"]["name"]
    (policy,) = [p for p in _kind("NetworkPolicy") if p["spec"]["podSelector"]["matchLabels"].items() <= labels.items()]
    assert policy["spec"]["ingress"] == [] and {"Ingress", "Egress"} == set(policy["spec"]["policyTypes"])
    # the command line the CronJob runs is one `vtstream replay` accepts (its own --help, as a user would)
    expanded = [a.replace("$(VTSTREAM_RETROHUNT_BUDGET)", env["VTSTREAM_RETROHUNT_BUDGET"]["value"]) for a in args]
    assert CliRunner().invoke(replay_command, [*expanded[1:], "--help"]).exit_code == 0


def test_the_compose_retrohunt_runs_the_same_command_daily() -> None:
    compose = yaml.safe_load((DEPLOY / "docker-compose.yml").read_text())
    service = compose["services"]["retrohunt"]
    script = " ".join(service["command"])
    assert "vtstream replay --topic indicators.raw --from 7d --max-age 1d" in script
    assert '--budget "$$VTSTREAM_RETROHUNT_BUDGET"' in script and "--run 'retrohunt-{date}'" in script
    assert "sleep" in script and "VTSTREAM_RETROHUNT_BUDGET" in service["environment"]
    assert KAFKA_CLIENT_SETTINGS <= set(service["environment"])
    assert service["depends_on"]["topics"] == {"condition": "service_completed_successfully"}
    worker = compose["services"]["worker"]  # as hardened as a worker: the CA only, no privileges
    assert service["volumes"] == worker["volumes"] and service["read_only"] is True
    assert service["cap_drop"] == ["ALL"] and service["security_opt"] == worker["security_opt"]
