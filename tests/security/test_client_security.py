"""SASL/SCRAM and mutual-TLS settings render into each client library's own configuration, or are refused."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import faust
import pytest
from confluent_kafka import KafkaException, Producer
from faust.transport.drivers.aiokafka import credentials_to_aiokafka_auth
from security_kit import KEY_PASSPHRASE, Pki

from onceonly.errors import ConfigError
from onceonly.kafka import (
    confluent_config,
    confluent_consumer_config,
    confluent_producer_config,
    faust_app_settings,
    kafka_python_config,
    ssl_context,
)
from onceonly.settings import Settings

PASSWORD = "scram-pw-8c1f"


def scram(mechanism: str, protocol: str = "SASL_SSL", **kw: Any) -> Settings:
    return Settings(
        bootstrap_servers="b1:9093,b2:9093",
        security_protocol=protocol,
        sasl_mechanism=mechanism,
        sasl_username="housing_fund",
        sasl_password=PASSWORD,
        **kw,
    )


@pytest.mark.parametrize("mechanism", ["SCRAM-SHA-256", "SCRAM-SHA-512"])
def test_scram_renders_into_librdkafka_properties(mechanism: str, pki: Pki) -> None:
    s = scram(mechanism, ssl_cafile=pki.ca)
    for conf in (confluent_config(s), confluent_producer_config(s), confluent_consumer_config(s, "subscriber.tax")):
        assert conf["security.protocol"] == "SASL_SSL"
        assert conf["sasl.mechanism"] == mechanism
        assert (conf["sasl.username"], conf["sasl.password"]) == ("housing_fund", PASSWORD)
        assert conf["ssl.ca.location"] == str(pki.ca)
        assert "ssl.endpoint.identification.algorithm" not in conf  # librdkafka's default verifies the host name


@pytest.mark.parametrize("mechanism", ["SCRAM-SHA-256", "SCRAM-SHA-512"])
def test_scram_renders_into_kafka_python_and_aiokafka_arguments(mechanism: str, pki: Pki) -> None:
    conf = kafka_python_config(scram(mechanism, ssl_cafile=pki.ca))
    assert conf["bootstrap_servers"] == ["b1:9093", "b2:9093"]
    assert conf["security_protocol"] == "SASL_SSL"
    assert conf["sasl_mechanism"] == mechanism
    assert (conf["sasl_plain_username"], conf["sasl_plain_password"]) == ("housing_fund", PASSWORD)
    ctx = conf["ssl_context"]
    assert ctx.check_hostname and ctx.verify_mode.name == "CERT_REQUIRED"
    assert [c["subject"] for c in ctx.get_ca_certs()] == [((("commonName", "onceonly test cluster CA"),),)]


@pytest.mark.parametrize("mechanism", ["SCRAM-SHA-256", "SCRAM-SHA-512"])
def test_scram_renders_into_faust_credentials_as_aiokafka_sees_them(mechanism: str, pki: Pki) -> None:
    app = faust.App("security-test", **faust_app_settings(scram(mechanism, ssl_cafile=pki.ca)))
    auth = credentials_to_aiokafka_auth(app.conf.broker_credentials)
    assert auth["security_protocol"] == "SASL_SSL"
    assert auth["sasl_mechanism"] == mechanism
    assert (auth["sasl_plain_username"], auth["sasl_plain_password"]) == ("housing_fund", PASSWORD)
    assert auth["ssl_context"].verify_mode.name == "CERT_REQUIRED"


def test_sasl_plaintext_has_no_tls_context() -> None:
    s = scram("SCRAM-SHA-512", protocol="SASL_PLAINTEXT")
    assert "ssl_context" not in kafka_python_config(s)
    assert (
        credentials_to_aiokafka_auth(faust.App("t", **faust_app_settings(s)).conf.broker_credentials)["ssl_context"]
        is None
    )


def mtls(pki: Pki, **kw: Any) -> Settings:
    base: dict[str, Any] = {
        "security_protocol": "SSL",
        "ssl_cafile": pki.ca,
        "ssl_certfile": pki.client_cert,
        "ssl_keyfile": pki.client_key,
        "ssl_key_password": KEY_PASSPHRASE,
    }
    return Settings(**{**base, **kw})


def test_mutual_tls_renders_for_every_library(pki: Pki) -> None:
    s = mtls(pki)
    conf = confluent_config(s)
    assert conf["security.protocol"] == "SSL"
    assert conf["ssl.certificate.location"] == str(pki.client_cert)
    assert conf["ssl.key.location"] == str(pki.client_key)
    assert conf["ssl.key.password"] == KEY_PASSPHRASE
    assert "sasl.mechanism" not in conf
    assert kafka_python_config(s)["security_protocol"] == "SSL"
    auth = credentials_to_aiokafka_auth(faust.App("t", **faust_app_settings(s)).conf.broker_credentials)
    assert auth["security_protocol"] == "SSL" and auth["ssl_context"] is not None


def test_plaintext_stays_plaintext() -> None:
    s = Settings()
    assert confluent_config(s)["security.protocol"] == "PLAINTEXT"
    assert "ssl_context" not in kafka_python_config(s)
    assert "broker_credentials" not in faust_app_settings(s)


def test_hostname_check_can_be_turned_off_for_ip_addressed_brokers(pki: Pki) -> None:
    s = mtls(pki, ssl_check_hostname=False)
    assert confluent_config(s)["ssl.endpoint.identification.algorithm"] == "none"
    ctx = ssl_context(s)
    assert ctx is not None and not ctx.check_hostname


@pytest.mark.parametrize(
    ("kw", "message"),
    [
        (
            {"security_protocol": "SASL_SSL"},
            "needs ONCEONLY_SASL_MECHANISM, ONCEONLY_SASL_USERNAME, ONCEONLY_SASL_PASSWORD",
        ),
        (
            {"security_protocol": "SASL_SSL", "sasl_mechanism": "SCRAM-SHA-512", "sasl_username": "tax"},
            "needs ONCEONLY_SASL_PASSWORD",
        ),
        ({"sasl_mechanism": "SCRAM-SHA-512"}, "sasl_mechanism is set but security_protocol is PLAINTEXT"),
        ({"security_protocol": "SSL", "ssl_certfile": Path("c.pem")}, "needs both ONCEONLY_SSL_CERTFILE and"),
        ({"ssl_cafile": Path("ca.pem")}, "nothing would be encrypted"),
    ],
)
def test_half_configured_security_is_refused_with_one_clear_line(kw: dict[str, Any], message: str) -> None:
    s = Settings(**kw)
    for render in (confluent_config, kafka_python_config, faust_app_settings):
        with pytest.raises(ConfigError, match=message):
            render(s)


def test_missing_tls_file_is_named(tmp_path: Path, pki: Pki) -> None:
    s = mtls(pki, ssl_certfile=tmp_path / "nope.crt")
    with pytest.raises(ConfigError, match=r"TLS file not found: .*nope\.crt \(ONCEONLY_SSL_CERTFILE\)"):
        kafka_python_config(s)


def test_librdkafka_accepts_the_rendered_mtls_config(pki: Pki) -> None:
    """librdkafka loads CA, certificate and (encrypted) key when the client is created: a wrong file fails here."""
    conf = confluent_producer_config(
        mtls(pki, bootstrap_servers="127.0.0.1:9"), **{"log_level": 0, "socket.connection.setup.timeout.ms": 1000}
    )
    Producer(conf).flush(0)
    conf["ssl.key.password"] = "wrong-passphrase"
    with pytest.raises(KafkaException) as err:
        Producer(conf)
    assert "wrong-passphrase" not in str(err.value)
    assert KEY_PASSPHRASE not in str(err.value)
