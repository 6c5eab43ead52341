"""Client configuration for the three Kafka libraries the platform uses, from one ``Settings``.

confluent-kafka carries the hot paths (publish, raw reads, admin); aiokafka runs under Faust for the
distributor and subscribers; kafka-python is offered to adapters that want a pure-Python client.
"""

from __future__ import annotations

from typing import Any

from onceonly.settings import Settings


def confluent_config(s: Settings, **extra: Any) -> dict[str, Any]:
    """librdkafka properties (producer, consumer or admin)."""
    conf: dict[str, Any] = {
        "bootstrap.servers": s.bootstrap_servers,
        "client.id": s.client_id,
        "security.protocol": s.security_protocol,
    }
    if s.sasl_mechanism:
        conf["sasl.mechanism"] = s.sasl_mechanism
        conf["sasl.username"] = s.sasl_username or ""
        conf["sasl.password"] = s.sasl_password.get_secret_value() if s.sasl_password else ""
    if s.ssl_cafile:
        conf["ssl.ca.location"] = str(s.ssl_cafile)
    if s.ssl_certfile:
        conf["ssl.certificate.location"] = str(s.ssl_certfile)
    if s.ssl_keyfile:
        conf["ssl.key.location"] = str(s.ssl_keyfile)
    conf.update(extra)
    return conf


def confluent_consumer_config(s: Settings, group_id: str, **extra: Any) -> dict[str, Any]:
    """A consumer that commits only what the caller says it has processed."""
    return confluent_config(
        s,
        **{
            "group.id": group_id,
            "enable.auto.commit": False,
            "auto.offset.reset": "earliest",
            "session.timeout.ms": s.session_timeout_ms,
            "heartbeat.interval.ms": s.heartbeat_interval_ms,
            **extra,
        },
    )


def confluent_producer_config(s: Settings, **extra: Any) -> dict[str, Any]:
    """An idempotent producer that waits for every in-sync replica."""
    return confluent_config(s, **{"enable.idempotence": True, "acks": "all", "linger.ms": 5, **extra})


def kafka_python_config(s: Settings, **extra: Any) -> dict[str, Any]:
    """kafka-python / aiokafka keyword arguments for the same cluster."""
    conf: dict[str, Any] = {
        "bootstrap_servers": s.bootstrap_servers.split(","),
        "client_id": s.client_id,
        "security_protocol": s.security_protocol,
    }
    if s.sasl_mechanism:
        conf["sasl_mechanism"] = s.sasl_mechanism
        conf["sasl_plain_username"] = s.sasl_username
        conf["sasl_plain_password"] = s.sasl_password.get_secret_value() if s.sasl_password else None
    conf.update(extra)
    return conf


def faust_broker_url(s: Settings) -> str:
    """Faust wants ``kafka://host:port;host:port``."""
    return "kafka://" + ";".join(s.bootstrap_servers.split(","))


def faust_app_settings(s: Settings) -> dict[str, Any]:
    """Faust app keyword arguments tuned to the profile (short group timeouts on the embedded broker)."""
    return {
        "broker": faust_broker_url(s),
        "broker_session_timeout": s.session_timeout_ms / 1000,
        "broker_heartbeat_interval": s.heartbeat_interval_ms / 1000,
        "broker_rebalance_timeout": max(s.session_timeout_ms / 1000, 10.0),
        "stream_wait_empty": False,
        "topic_allow_declare": False,
        "topic_disable_leader": True,
        "web_enabled": False,
    }
