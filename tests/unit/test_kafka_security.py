"""Kafka client security settings -> librdkafka properties and faust credentials (no broker)."""

from __future__ import annotations

import ssl
import subprocess
from pathlib import Path

import faust
import pytest
from pydantic import ValidationError

from pipeline.kafka.security import client_config, faust_credentials, ssl_context
from pipeline.settings import KafkaSettings, Settings

ROOT = Path(__file__).resolve().parents[2]


def test_plaintext_adds_nothing() -> None:
    k = KafkaSettings()
    assert client_config(k) == {} and faust_credentials(k) is None and ssl_context(k) is None


def test_sasl_ssl_with_scram(tmp_path: Path) -> None:
    subprocess.run([str(ROOT / "infra/kafka/make-certs.sh"), str(tmp_path)], check=True, capture_output=True)
    ca = tmp_path / "ca" / "ca.crt"
    k = KafkaSettings(
        security_protocol="SASL_SSL", sasl_username="worker", sasl_password="s3cret", ssl_ca_file=ca
    )
    assert client_config(k) == {
        "security.protocol": "sasl_ssl",
        "sasl.mechanism": "SCRAM-SHA-512",
        "sasl.username": "worker",
        "sasl.password": "s3cret",
        "ssl.endpoint.identification.algorithm": "https",
        "ssl.ca.location": str(ca),
    }
    credentials = faust_credentials(k)
    assert isinstance(credentials, faust.SASLCredentials)
    assert (credentials.mechanism.value, credentials.protocol.value) == ("SCRAM-SHA-512", "SASL_SSL")
    assert credentials.ssl_context is not None
    assert credentials.ssl_context.verify_mode == ssl.CERT_REQUIRED and credentials.ssl_context.check_hostname
    # The password never shows when settings are printed or logged.
    assert "s3cret" not in repr(Settings(kafka=k)) and "s3cret" not in repr(credentials)


def test_mtls_and_sasl_plaintext() -> None:
    k = KafkaSettings(security_protocol="SSL", ssl_cert_file=Path("/c.pem"), ssl_key_file=Path("/k.pem"))
    config = client_config(k)
    assert config["security.protocol"] == "ssl" and config["ssl.certificate.location"] == "/c.pem"
    assert "sasl.mechanism" not in config
    plain = KafkaSettings(security_protocol="SASL_PLAINTEXT", sasl_username="u", sasl_password="p")
    assert "ssl.ca.location" not in client_config(plain)
    assert faust_credentials(plain).protocol.value == "SASL_PLAINTEXT"


def test_incomplete_security_settings_are_refused() -> None:
    with pytest.raises(ValidationError, match=r"needs kafka\.sasl_username"):
        KafkaSettings(security_protocol="SASL_SSL")
    with pytest.raises(ValidationError, match="go together"):
        KafkaSettings(security_protocol="SSL", ssl_cert_file=Path("/c.pem"))
