"""`onceonly topics render`: the Strimzi resources, the review listing and the script equal the catalog."""

from __future__ import annotations

import shlex
from typing import Any

import pytest
import yaml
from typer.testing import CliRunner

from onceonly.catalog import ConcreteTopic, load_catalog, load_departments
from onceonly.cli import app
from onceonly.render.acls import render_acls
from onceonly.render.strimzi import API_VERSION, is_resource_name, kafka_topics, kafka_users, resource_name, user_name
from onceonly.render.topics import kafka_topics_script, with_replicas
from onceonly.settings import Settings
from onceonly.topics import desired_topics

runner = CliRunner()


def render(*args: str) -> list[dict[str, Any]]:
    result = runner.invoke(app, ["topics", "render", *args])
    assert result.exit_code == 0, result.output
    return [d for d in yaml.safe_load_all(result.stdout) if d]


def topic_name(resource: dict[str, Any]) -> str:
    return str(resource["spec"].get("topicName", resource["metadata"]["name"]))


def by_name(topics: list[ConcreteTopic]) -> dict[str, ConcreteTopic]:
    return {t.name: t for t in topics}


def test_strimzi_topics_equal_the_catalogs_desired_topics() -> None:
    docs = render("--format", "strimzi", "--no-users")
    desired = by_name(desired_topics(Settings()))
    assert [d["kind"] for d in docs] == ["KafkaTopic"] * len(desired)
    assert {topic_name(d) for d in docs} == set(desired)
    for d in docs:
        t = desired[topic_name(d)]
        assert d["apiVersion"] == API_VERSION == "kafka.strimzi.io/v1beta2"
        assert d["metadata"]["labels"]["strimzi.io/cluster"] == "onceonly"
        assert d["spec"]["partitions"] == t.partitions
        assert d["spec"]["replicas"] == t.replication_factor
        assert d["spec"]["config"] == t.config
        assert {"retention.ms", "cleanup.policy"} <= d["spec"]["config"].keys()


def test_production_replicas_and_min_insync_replicas_apply_to_every_topic() -> None:
    docs = render("--format", "strimzi", "--no-users", "--replicas", "3", "--min-insync-replicas", "2")
    assert {d["spec"]["replicas"] for d in docs} == {3}
    assert {d["spec"]["config"]["min.insync.replicas"] for d in docs} == {"2"}
    compacted = [topic_name(d) for d in docs if d["spec"]["config"]["cleanup.policy"] == "compact"]
    assert "_schemas" in compacted and "interest" in compacted
    forever = {topic_name(d) for d in docs if d["spec"]["config"]["retention.ms"] == "-1"}
    assert {n for n in by_name(desired_topics(Settings())) if n.startswith("change.")} <= forever


def test_the_topic_prefix_of_the_deployment_is_applied(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ONCEONLY_TOPIC_PREFIX", "Prod_")
    docs = render("--format", "strimzi", "--no-users")
    assert all(topic_name(d).startswith("Prod_") for d in docs)
    assert all(is_resource_name(d["metadata"]["name"]) for d in docs)


def test_resource_names_are_valid_unique_and_keep_the_real_topic_name() -> None:
    docs = render("--format", "strimzi", "--namespace", "onceonly")
    names = [(d["kind"], d["metadata"]["name"]) for d in docs]
    assert len(names) == len(set(names))
    for d in docs:
        assert is_resource_name(d["metadata"]["name"]), d["metadata"]["name"]
        assert d["metadata"]["namespace"] == "onceonly"
    topics = {topic_name(d): d for d in docs if d["kind"] == "KafkaTopic"}
    assert topics["inbox.housing_fund"]["spec"]["topicName"] == "inbox.housing_fund"
    assert topics["_schemas"]["metadata"]["name"].startswith("schemas-")
    assert "topicName" not in topics["change.person"]["spec"]  # valid names stay as they are


@pytest.mark.parametrize("name", ["_schemas", "inbox.housing_fund", "A.B", "x._y", "-a-", "a..b", "é"])
def test_resource_name_sanitises_anything(name: str) -> None:
    assert is_resource_name(resource_name(name))
    assert resource_name(name) != resource_name(name + "_")


def test_strimzi_output_has_a_kafka_user_per_department_and_service() -> None:
    docs = render("--format", "strimzi")
    users = {d["metadata"]["name"]: d for d in docs if d["kind"] == "KafkaUser"}
    departments = load_departments().codes()
    assert {user_name(d) for d in departments} | {"distributor", "registry", "gateway", "operator", "tracker"} == set(
        users
    )
    for code in departments:
        user = users[user_name(code)]
        assert user["metadata"]["labels"]["onceonly.io/department"] == code
        assert user["spec"]["authentication"] == {"type": "scram-sha-512"}
        assert user["spec"]["authorization"]["type"] == "simple"


def test_kafka_users_carry_exactly_the_rendered_acls() -> None:
    settings, departments = Settings(), load_departments()
    acls = render_acls(settings, load_catalog(), departments)
    users = kafka_users(acls, cluster="c", authentication="tls", departments=departments.codes())
    rules = {
        (
            u["metadata"]["name"],
            r["resource"]["type"],
            r["resource"]["name"],
            r["resource"]["patternType"],
            tuple(r["operations"]),
        )
        for u in users
        for r in u["spec"]["authorization"]["acls"]
    }
    expected = {
        (
            user_name(a.principal),
            a.resource_type,
            a.resource,
            "prefix" if a.pattern == "prefixed" else "literal",
            a.operations,
        )
        for a in acls
    }
    assert rules == expected
    assert all(u["spec"]["authentication"] == {"type": "tls"} for u in users)


def test_yaml_listing_equals_the_desired_topics() -> None:
    (doc,) = render("--format", "yaml", "--replicas", "3")
    desired = with_replicas(desired_topics(Settings()), 3)
    assert [(t["name"], t["partitions"], t["replication_factor"], t["config"]) for t in doc["topics"]] == [
        (t.name, t.partitions, t.replication_factor, t.config) for t in desired
    ]


def test_the_kafka_topics_script_creates_each_topic_once_with_its_config() -> None:
    topics = with_replicas(desired_topics(Settings()), 3)
    script = kafka_topics_script(topics, min_insync_replicas=2)
    creates = [shlex.split(line) for line in script.splitlines() if "--create" in line]
    assert len(creates) == len(topics)
    for argv, t in zip(creates, topics, strict=True):
        assert argv[argv.index("--topic") + 1] == t.name
        assert argv[argv.index("--partitions") + 1] == str(t.partitions)
        assert argv[argv.index("--replication-factor") + 1] == "3"
        configs = {argv[i + 1] for i, a in enumerate(argv) if a == "--config"}
        assert configs == {f"{k}={v}" for k, v in t.config.items()} | {"min.insync.replicas=2"}
        assert "--if-not-exists" in argv


def test_kafka_topics_match_directly_built_resources() -> None:
    topics = desired_topics(Settings())
    assert render("--format", "strimzi", "--no-users", "--cluster", "x") == kafka_topics(topics, cluster="x")


def test_output_can_go_to_a_file(tmp_path: Any) -> None:
    out = tmp_path / "topics.yaml"
    result = runner.invoke(app, ["topics", "render", "--no-users", "--output", str(out)])
    assert result.exit_code == 0 and result.stdout == ""
    assert len([d for d in yaml.safe_load_all(out.read_text()) if d]) == len(desired_topics(Settings()))
