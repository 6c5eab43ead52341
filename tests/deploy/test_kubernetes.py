"""deploy/kubernetes: Deployments that can be probed, limited and stopped gracefully, and agree with the code."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import yaml
from deploy_kit import (
    K8S_DIR,
    OTHER_ONCEONLY_ENV,
    SUPPORTED_IMAGES,
    command_problem,
    configmap,
    containers,
    k8s_documents,
    k8s_kind,
    literal_secrets,
    option_value,
    settings_env_names,
    split_image,
)

from onceonly.catalog import load_catalog, load_departments
from onceonly.kafka import confluent_config
from onceonly.render.acls import Holders, render_acls
from onceonly.render.strimzi import is_resource_name, kafka_users, user_name
from onceonly.settings import Settings
from services.distributor.agreements import load_agreements
from services.subscriber import load_subscribers

KNOWN_KINDS = {"Namespace", "ConfigMap", "Deployment", "Service"}


def deployments() -> list[dict[str, Any]]:
    return k8s_kind("Deployment")


def container_env(c: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {e["name"]: e for e in c.get("env", [])}


def argv(c: dict[str, Any]) -> list[str]:
    return [*c.get("command", ["onceonly"]), *c.get("args", [])]


@pytest.fixture(scope="module")
def config_file() -> Path:
    """The onceonly.yaml kustomize turns into the ConfigMap onceonly-config, which the pods mount."""
    return K8S_DIR / "onceonly.yaml"


def test_manifests_parse_and_kustomization_lists_them() -> None:
    kinds = {d["kind"] for _, d in k8s_documents()}
    assert kinds <= KNOWN_KINDS
    kustomization = yaml.safe_load((K8S_DIR / "kustomization.yaml").read_text())
    for resource in kustomization["resources"]:
        assert (K8S_DIR / resource).is_file()
    listed = set(kustomization["resources"])
    (generated,) = kustomization["configMapGenerator"]
    assert generated == {"name": "onceonly-config", "files": ["onceonly.yaml"]}
    unlisted = {p.name for p in K8S_DIR.glob("*.yaml")} - listed
    assert unlisted == {"kustomization.yaml", "onceonly.yaml", "registry.yaml"}  # registry.yaml is optional
    for d in deployments():
        volumes = d["spec"]["template"]["spec"]["volumes"]
        assert {"name": "config", "configMap": {"name": "onceonly-config"}} in volumes


def test_no_secret_objects_and_every_secret_is_referenced() -> None:
    assert not [d for _, d in k8s_documents() if d["kind"] == "Secret"]
    for d in deployments():
        for c in containers(d):
            for name, e in container_env(c).items():
                if re.search(r"PASSWORD|PASSPHRASE|SECRET|TOKEN|REDIS_URL|API_KEYS", name):
                    assert "value" not in e and "secretKeyRef" in e["valueFrom"], f"{name} must come from a Secret"
    for key, value in configmap("onceonly-env").items():
        assert not re.search(r"PASSWORD|SECRET", key), key
        assert "@" not in value, f"{key} looks like it carries credentials"


def test_no_secret_is_written_into_the_files() -> None:
    for path in K8S_DIR.glob("*.yaml"):
        assert literal_secrets(path.read_text()) == [], path.name


def test_images_are_supported_and_named_in_the_kustomization() -> None:
    kustomization = yaml.safe_load((K8S_DIR / "kustomization.yaml").read_text())
    overridden = {i["name"] for i in kustomization["images"]}
    for d in deployments():
        for c in containers(d):
            name, tag = split_image(c["image"])
            assert tag in SUPPORTED_IMAGES[name], c["image"]
            assert name in overridden, f"{name} has no kustomize image override (registry, tag)"


def test_every_deployment_can_be_probed_limited_and_stopped_gracefully() -> None:
    for d in deployments():
        spec = d["spec"]["template"]["spec"]
        name = d["metadata"]["name"]
        assert 10 <= spec["terminationGracePeriodSeconds"] <= 120, name
        assert spec["securityContext"]["runAsNonRoot"] is True
        assert d["spec"]["selector"]["matchLabels"].items() <= d["spec"]["template"]["metadata"]["labels"].items()
        for c in containers(d):
            for kind in ("requests", "limits"):
                assert {"cpu", "memory"} <= c["resources"][kind].keys(), f"{name}: no {kind}"
            ports = {p["name"] for p in c.get("ports", [])} | {p["containerPort"] for p in c.get("ports", [])}
            for probe in ("readinessProbe", "livenessProbe"):
                p = c[probe]
                target = p.get("httpGet", p.get("tcpSocket", {})).get("port")
                assert target in ports or "exec" in p, f"{name}: {probe} probes port {target}, not declared"
            assert c["securityContext"]["allowPrivilegeEscalation"] is False
            assert c["securityContext"]["readOnlyRootFilesystem"] is True
            mounts = {m["mountPath"] for m in c["volumeMounts"]}
            assert "/tmp" in mounts  # the state dir lives there: the root filesystem is read-only
            if any(p["name"] == "http" for p in c.get("ports", [])):
                assert c["lifecycle"]["preStop"]["exec"]["command"][0] == "sleep", f"{name}: no preStop drain"


def test_probes_hit_the_ports_the_commands_open() -> None:
    for d in deployments():
        for c in containers(d):
            args = argv(c)
            declared = {p["containerPort"] for p in c.get("ports", [])}
            opened = {int(v) for v in (option_value(args, "--port"), option_value(args, "--metrics-port")) if v}
            assert declared == opened, f"{d['metadata']['name']}: declares {declared}, the command opens {opened}"


def test_the_distributor_never_runs_twice() -> None:
    (d,) = [d for d in deployments() if d["metadata"]["name"] == "distributor"]
    assert d["spec"]["replicas"] == 1 and d["spec"]["strategy"]["type"] == "Recreate"


def test_every_command_is_a_real_onceonly_command() -> None:
    for d in deployments():
        for c in containers(d):
            assert command_problem(argv(c)) is None, f"{d['metadata']['name']}: {command_problem(argv(c))}"
            assert c["workingDir"] == "/etc/onceonly"
            assert {"name": "config", "mountPath": "/etc/onceonly", "readOnly": True} in c["volumeMounts"]


def test_environment_names_are_settings() -> None:
    known = settings_env_names() | OTHER_ONCEONLY_ENV
    names = set(configmap("onceonly-env"))
    for d in deployments():
        for c in containers(d):
            names |= set(container_env(c))
            assert c["envFrom"] == [{"configMapRef": {"name": "onceonly-env"}}]
    assert {n for n in names if n.startswith("ONCEONLY_")} <= known


def test_services_select_a_deployment_and_target_a_declared_port() -> None:
    by_name = {d["metadata"]["name"]: d for d in deployments()}
    for svc in k8s_kind("Service"):
        target = by_name[svc["spec"]["selector"]["app.kubernetes.io/name"]]
        port_names = {p["name"] for c in containers(target) for p in c.get("ports", [])}
        for p in svc["spec"]["ports"]:
            assert p["targetPort"] in port_names


def k8s_settings(c: dict[str, Any], ca: Path) -> Settings:
    env: dict[str, Any] = {k[len("ONCEONLY_") :].lower(): v for k, v in configmap("onceonly-env").items()}
    for name, e in container_env(c).items():
        if name.startswith("ONCEONLY_"):
            env[name[len("ONCEONLY_") :].lower()] = e.get("value", "from-a-secret")
    env["ssl_cafile"] = str(ca)  # the mounted cluster CA
    return Settings(**env)


def test_pods_render_a_complete_sasl_ssl_client_config(tmp_path: Path) -> None:
    ca = tmp_path / "ca.crt"
    ca.write_text("-----BEGIN CERTIFICATE-----\n")
    assert configmap("onceonly-env")["ONCEONLY_SSL_CAFILE"] == "/etc/kafka-ca/ca.crt"
    for d in deployments():
        for c in containers(d):
            conf = confluent_config(k8s_settings(c, ca))
            assert conf["security.protocol"] == "SASL_SSL" and conf["sasl.mechanism"] == "SCRAM-SHA-512"
            assert conf["bootstrap.servers"] == "onceonly-kafka-bootstrap:9093"  # Strimzi's TLS listener
            mounts = {m["mountPath"] for m in c["volumeMounts"]}
            assert "/etc/kafka-ca" in mounts


def holders(config_file: Path) -> Holders:
    agreements = load_agreements(config_file, departments=load_departments().codes())
    return Holders.from_agreements(agreements, str(config_file))


def test_each_pod_authenticates_as_a_rendered_kafka_user_with_its_strimzi_secret(config_file: Path) -> None:
    departments = load_departments()
    acls = render_acls(Settings(), load_catalog(), departments, holders(config_file))
    users = {u["metadata"]["name"] for u in kafka_users(acls, cluster="onceonly", departments=departments.codes())}
    for d in deployments():
        for c in containers(d):
            env = container_env(c)
            user = env["ONCEONLY_SASL_USERNAME"]["value"]
            assert user in users, f"{d['metadata']['name']} authenticates as {user}: no such KafkaUser"
            ref = env["ONCEONLY_SASL_PASSWORD"]["valueFrom"]["secretKeyRef"]
            assert ref == {"name": user, "key": "password"}  # the Secret Strimzi's User Operator writes
            assert is_resource_name(user)


def test_subscribers_match_the_configuration_and_the_agreements(
    config_file: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    raw = yaml.safe_load(config_file.read_text())["subscribers"]
    running = {}
    for d in deployments():
        if not d["metadata"]["name"].startswith("subscriber-"):
            continue
        (c,) = containers(d)
        dept = option_value(argv(c), "--department") or ""
        assert dept in raw, f"{d['metadata']['name']} runs {dept}, which onceonly.yaml does not configure"
        running[dept] = d
        assert d["metadata"]["name"] == f"subscriber-{user_name(dept)}"
        assert container_env(c)["ONCEONLY_SASL_USERNAME"]["value"] == user_name(dept)
        needed = set(re.findall(r"\$\{(\w+)\}", raw[dept]["sink"]["url"]))
        assert needed <= set(container_env(c)), f"{dept}: its sink URL needs {needed} in the pod"
        for var in needed:
            monkeypatch.setenv(var, "placeholder")
    configured = {s.department for s in load_subscribers(config_file).select(None)}  # validates every section
    assert set(running) == configured
    assert configured <= holders(config_file).departments
