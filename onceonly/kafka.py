"""Client configuration for the three Kafka libraries the platform uses, from one ``Settings``.

confluent-kafka carries every hot path (publisher, distributor, subscribers, tracker, operator tools, admin);
kafka-python and aiokafka/Faust settings are offered to adapters that want a pure-Python or asyncio client (the
README's "Performance" section says why the services do not run on Faust).
"""

from __future__ import annotations

import ssl
from typing import Any

from onceonly.errors import ConfigError
from onceonly.settings import Settings

# Config keys (all three libraries) whose values are secrets: masked in ClientConfig's repr.
SECRET_CONFIG_KEYS = frozenset({"sasl.password", "ssl.key.password", "sasl_plain_password", "ssl_password"})


class ClientConfig(dict[str, Any]):
    """A client config dict whose repr masks passwords, so logging it or a traceback showing it leaks nothing."""

    def __repr__(self) -> str:
        return repr({k: "***" if k in SECRET_CONFIG_KEYS and v else v for k, v in self.items()})


def _secret(value: Any) -> str | None:
    return value.get_secret_value() if value is not None else None


def check_security(s: Settings) -> None:
    """Refuse half-configured security: it would fail obscurely at the broker, or silently send plaintext."""
    env = "ONCEONLY_"
    if s.security_protocol.startswith("SASL_"):
        need = {"sasl_mechanism": s.sasl_mechanism, "sasl_username": s.sasl_username, "sasl_password": s.sasl_password}
        missing = [env + name.upper() for name, value in need.items() if not value]
        if missing:
            raise ConfigError(f"security_protocol {s.security_protocol} needs {', '.join(missing)}")
    elif s.sasl_mechanism:
        raise ConfigError(f"sasl_mechanism is set but security_protocol is {s.security_protocol}", hint="use SASL_SSL")
    if bool(s.ssl_certfile) != bool(s.ssl_keyfile):
        raise ConfigError(f"mutual TLS needs both {env}SSL_CERTFILE and {env}SSL_KEYFILE")
    uses_tls = s.security_protocol in ("SSL", "SASL_SSL")
    if not uses_tls and (s.ssl_cafile or s.ssl_certfile):
        raise ConfigError(
            f"TLS files are set but security_protocol is {s.security_protocol}: nothing would be encrypted",
            hint="use SSL or SASL_SSL",
        )


def confluent_config(s: Settings, **extra: Any) -> dict[str, Any]:
    """librdkafka properties (producer, consumer or admin)."""
    check_security(s)
    conf: dict[str, Any] = ClientConfig(
        {
            "bootstrap.servers": s.bootstrap_servers,
            "client.id": s.client_id,
            "security.protocol": s.security_protocol,
        }
    )
    if s.sasl_mechanism:
        conf["sasl.mechanism"] = s.sasl_mechanism
        conf["sasl.username"] = s.sasl_username or ""
        conf["sasl.password"] = _secret(s.sasl_password) or ""
    if s.ssl_cafile:
        conf["ssl.ca.location"] = str(s.ssl_cafile)
    if s.ssl_certfile:
        conf["ssl.certificate.location"] = str(s.ssl_certfile)
    if s.ssl_keyfile:
        conf["ssl.key.location"] = str(s.ssl_keyfile)
    if s.ssl_key_password:
        conf["ssl.key.password"] = _secret(s.ssl_key_password)
    if s.security_protocol in ("SSL", "SASL_SSL") and not s.ssl_check_hostname:
        conf["ssl.endpoint.identification.algorithm"] = "none"
    conf.update(extra)
    return conf


def ssl_context(s: Settings) -> ssl.SSLContext | None:
    """The TLS context kafka-python, aiokafka and Faust use: the cluster CA, and the client certificate for mTLS."""
    check_security(s)
    if s.security_protocol not in ("SSL", "SASL_SSL"):
        return None
    for name in ("ssl_cafile", "ssl_certfile", "ssl_keyfile"):
        path = getattr(s, name)
        if path is not None and not path.is_file():
            raise ConfigError(f"TLS file not found: {path} (ONCEONLY_{name.upper()})")
    try:
        ctx = ssl.create_default_context(cafile=str(s.ssl_cafile) if s.ssl_cafile else None)
        if s.ssl_certfile and s.ssl_keyfile:
            ctx.load_cert_chain(str(s.ssl_certfile), str(s.ssl_keyfile), password=_secret(s.ssl_key_password))
    except ssl.SSLError as e:
        # from None: the chained error is harmless, but a traceback must not invite printing locals (the password).
        raise ConfigError(f"cannot load the TLS CA, certificate or key: {e.reason or e}") from None
    ctx.check_hostname = s.ssl_check_hostname
    return ctx


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
    conf: dict[str, Any] = ClientConfig(
        {
            "bootstrap_servers": s.bootstrap_servers.split(","),
            "client_id": s.client_id,
            "security_protocol": s.security_protocol,
        }
    )
    if s.sasl_mechanism:
        conf["sasl_mechanism"] = s.sasl_mechanism
        conf["sasl_plain_username"] = s.sasl_username
        conf["sasl_plain_password"] = _secret(s.sasl_password)
    context = ssl_context(s)
    if context is not None:
        conf["ssl_context"] = context  # both libraries take a context; aiokafka takes nothing else for TLS
    conf.update(extra)
    return conf


def faust_broker_url(s: Settings) -> str:
    """Faust wants ``kafka://host:port;host:port``."""
    return "kafka://" + ";".join(s.bootstrap_servers.split(","))


def faust_credentials(s: Settings) -> Any:
    """``broker_credentials`` for Faust: SASL (with TLS when SASL_SSL), TLS alone, or None for PLAINTEXT."""
    context = ssl_context(s)
    if s.security_protocol.startswith("SASL_"):
        from faust.auth import SASLCredentials

        return SASLCredentials(
            username=s.sasl_username, password=_secret(s.sasl_password), mechanism=s.sasl_mechanism, ssl_context=context
        )
    if context is not None:
        from faust.auth import SSLCredentials

        return SSLCredentials(context)
    return None


def faust_app_settings(s: Settings) -> dict[str, Any]:
    """Faust app keyword arguments tuned to the profile (short group timeouts on the embedded broker)."""
    credentials = faust_credentials(s)
    return {
        **({"broker_credentials": credentials} if credentials is not None else {}),
        "broker": faust_broker_url(s),
        "broker_session_timeout": s.session_timeout_ms / 1000,
        "broker_heartbeat_interval": s.heartbeat_interval_ms / 1000,
        "broker_rebalance_timeout": max(s.session_timeout_ms / 1000, 10.0),
        "stream_wait_empty": False,
        "topic_allow_declare": False,
        "topic_disable_leader": True,
        "web_enabled": False,
    }
