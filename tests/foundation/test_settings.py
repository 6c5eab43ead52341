"""Settings: every connection setting has an ``ONCEONLY_`` variable, the two profiles give the clients the timeouts
their broker needs, and the test fixtures find PostgreSQL where a department's CI would have it."""

from __future__ import annotations

import textwrap

import pytest

from onceonly.kafka import confluent_consumer_config, confluent_producer_config, faust_app_settings
from onceonly.settings import Settings

pytest_plugins = ["pytester"]

CONNECTION = {
    "bootstrap_servers": "kafka-1:9092,kafka-2:9092",
    "registry_url": "http://registry:8081",
    "redis_url": "redis://redis:6379/2",
    "security_protocol": "SASL_SSL",
    "sasl_mechanism": "SCRAM-SHA-512",
    "sasl_username": "tax",
    "ssl_cafile": "/etc/onceonly/ca.pem",
}


def test_every_connection_setting_comes_from_its_onceonly_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in CONNECTION.items():
        monkeypatch.setenv(f"ONCEONLY_{name.upper()}", value)
    monkeypatch.setenv("ONCEONLY_SASL_PASSWORD", "s3cret")
    s = Settings()
    for name, value in CONNECTION.items():
        assert str(getattr(s, name)) == value, name
    assert s.sasl_password is not None and s.sasl_password.get_secret_value() == "s3cret"


def test_a_bad_profile_is_refused_by_name(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ONCEONLY_PROFILE", "staging")
    with pytest.raises(ValueError, match="profile"):
        Settings()


@pytest.mark.parametrize(("profile", "session_ms", "heartbeat_ms"), [("dev", 6000, 1000), ("prod", 45000, 3000)])
def test_profiles_set_the_group_timeouts_of_every_group_client(
    profile: str, session_ms: int, heartbeat_ms: int
) -> None:
    """dev: short, because the embedded broker holds a join for half the session timeout (DESIGN.md); prod: Apache
    Kafka's own defaults. Producers carry no group settings (librdkafka warns about consumer-only properties)."""
    s = Settings(profile=profile)  # type: ignore[arg-type]
    consumer = confluent_consumer_config(s, "g")
    assert (consumer["session.timeout.ms"], consumer["heartbeat.interval.ms"]) == (session_ms, heartbeat_ms)
    faust = faust_app_settings(s)
    assert (faust["broker_session_timeout"], faust["broker_heartbeat_interval"]) == (
        session_ms / 1000,
        heartbeat_ms / 1000,
    )
    assert "session.timeout.ms" not in confluent_producer_config(s)


POSTGRES_PROBE = textwrap.dedent(
    """
    pytest_plugins = ["onceonly.testing"]

    def test_probe(postgres_url):
        print("POSTGRES=" + postgres_url)
    """
)


def test_the_postgres_fixture_takes_the_variable_first(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A department's CI points the fixtures at its own server; without the variable the machine's is used."""
    pytester.makepyfile(POSTGRES_PROBE)
    wanted = "postgresql+psycopg://ci@db.example:5433/ci"
    monkeypatch.setenv("ONCEONLY_TEST_POSTGRES_URL", wanted)
    result = pytester.runpytest_inprocess("-s", "-p", "no:cacheprovider")
    result.assert_outcomes(passed=1)
    assert f"POSTGRES={wanted}" in result.stdout.str()
