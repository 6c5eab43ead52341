"""A secret never shows in a repr, a log line or an error message, wherever it was given."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator

import faust
import pytest
from pydantic import ValidationError

from onceonly.errors import ConfigError
from onceonly.kafka import confluent_producer_config, faust_app_settings, kafka_python_config
from onceonly.logs import configure_logging
from onceonly.settings import Settings

SASL_SECRET = "sasl-Zq81-secret"
REDIS_SECRET = "redis-Hh27-secret"
KEY_SECRET = "keypass-Lx50-secret"
SECRETS = (SASL_SECRET, REDIS_SECRET, KEY_SECRET)


def full_settings() -> Settings:
    return Settings(
        redis_url=f"redis://:{REDIS_SECRET}@redis:6379/0",
        registry_url=f"https://registry:{REDIS_SECRET}@schemas.example:8081",
        security_protocol="SASL_PLAINTEXT",
        sasl_mechanism="SCRAM-SHA-512",
        sasl_username="tax",
        sasl_password=SASL_SECRET,
        ssl_key_password=KEY_SECRET,
    )


def assert_clean(text: str) -> None:
    for secret in SECRETS:
        assert secret not in text, f"secret leaked: {text}"


def test_settings_repr_and_str_hide_every_secret() -> None:
    s = full_settings()
    assert_clean(repr(s))
    assert_clean(str(s))
    assert "redis://:***@redis:6379/0" in repr(s)
    assert s.redis_url == f"redis://:{REDIS_SECRET}@redis:6379/0"  # the value itself is intact


def test_settings_from_the_environment_hide_the_password(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ONCEONLY_SASL_PASSWORD", SASL_SECRET)
    assert_clean(repr(Settings()))


def test_a_validation_error_does_not_echo_its_input() -> None:
    with pytest.raises(ValidationError) as err:
        Settings(sasl_password=SASL_SECRET, sasl_mechanism="SCRAM-SHA-1", redis_url=f"redis://:{REDIS_SECRET}@r")
    assert "sasl_mechanism" in str(err.value)
    assert_clean(str(err.value))
    assert_clean(repr(err.value.errors()))


def test_a_bad_password_type_is_reported_without_the_value(monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(ValidationError) as err:
        Settings.model_validate({"sasl_password": [SASL_SECRET]})
    assert "sasl_password" in str(err.value)
    assert_clean(str(err.value))


def test_rendered_client_configs_mask_passwords_in_repr() -> None:
    s = full_settings()
    conf = confluent_producer_config(s)
    assert conf["sasl.password"] == SASL_SECRET  # librdkafka gets the value ...
    assert_clean(repr(conf))  # ... a log line or a traceback does not
    assert_clean(str(conf))
    assert_clean(repr(kafka_python_config(s)))
    assert_clean(repr(faust_app_settings(s)))  # Faust's SASLCredentials shows the user name only


def test_faust_app_configuration_does_not_print_the_password() -> None:
    app = faust.App("redaction-test", **faust_app_settings(full_settings()))
    assert_clean(repr(app.conf.broker_credentials))


def test_configuration_errors_name_the_setting_not_its_value() -> None:
    s = Settings(security_protocol="SASL_SSL", sasl_password=SASL_SECRET)
    with pytest.raises(ConfigError) as err:
        confluent_producer_config(s)
    assert "ONCEONLY_SASL_MECHANISM" in str(err.value)
    assert_clean(str(err.value))


@pytest.fixture
def log_lines() -> Iterator[io.StringIO]:
    buffer = io.StringIO()
    handler = configure_logging("DEBUG", stream=buffer)
    yield buffer
    logging.getLogger().removeHandler(handler)


def test_logging_a_config_or_settings_redacts_them(log_lines: io.StringIO) -> None:
    s = full_settings()
    log = logging.getLogger("onceonly.test")
    log.info("connecting with %s", confluent_producer_config(s))
    log.info("settings %r", s)
    log.info("as a plain dict %s", dict(confluent_producer_config(s)))
    log.info("extra", extra={"config": dict(kafka_python_config(s)), "redis_url": s.redis_url})
    try:
        raise RuntimeError(f"cannot reach {s.redis_url} with sasl.password={SASL_SECRET}")
    except RuntimeError:
        log.exception("failed")
    text = log_lines.getvalue()
    assert len(text.splitlines()) == 5
    assert_clean(text)
    for line in text.splitlines():
        json.loads(line)
