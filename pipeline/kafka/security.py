"""How every facegate Kafka client authenticates and encrypts, from one set of settings.

    Producer({"bootstrap.servers": k.bootstrap, **client_config(k), ...})   # confluent-kafka
    faust.App(..., broker_credentials=faust_credentials(k))                 # aiokafka, via faust

Production (docker-compose.yml): SASL_SSL with SCRAM-SHA-512, a user per role, the brokers'
CA in ``kafka.ssl_ca_file``; mTLS (``ssl_cert_file`` / ``ssl_key_file``) where a deployment
prefers certificates. The password lives only in a SecretStr until the client is built.
"""

from __future__ import annotations

import ssl
from typing import Any

from ..settings import KafkaSettings


def client_config(k: KafkaSettings) -> dict[str, Any]:
    """The librdkafka properties for ``k``'s security settings (empty for PLAINTEXT)."""
    config: dict[str, Any] = {}
    if k.security_protocol == "PLAINTEXT":
        return config
    config["security.protocol"] = k.security_protocol.lower()
    if k.security_protocol.startswith("SASL_"):
        assert k.sasl_username and k.sasl_password, "KafkaSettings validates this"
        config["sasl.mechanism"] = k.sasl_mechanism
        config["sasl.username"] = k.sasl_username
        config["sasl.password"] = k.sasl_password.get_secret_value()
    if k.security_protocol.endswith("SSL"):
        config["ssl.endpoint.identification.algorithm"] = "https"  # the broker's name must match
        if k.ssl_ca_file is not None:
            config["ssl.ca.location"] = str(k.ssl_ca_file)
        if k.ssl_cert_file is not None and k.ssl_key_file is not None:
            config["ssl.certificate.location"] = str(k.ssl_cert_file)
            config["ssl.key.location"] = str(k.ssl_key_file)
            if k.ssl_key_password is not None:
                config["ssl.key.password"] = k.ssl_key_password.get_secret_value()
    return config


def ssl_context(k: KafkaSettings) -> ssl.SSLContext | None:
    """A verifying TLS context for aiokafka (None without TLS)."""
    if not k.security_protocol.endswith("SSL"):
        return None
    context = ssl.create_default_context(
        ssl.Purpose.SERVER_AUTH, cafile=str(k.ssl_ca_file) if k.ssl_ca_file else None
    )
    if k.ssl_cert_file is not None and k.ssl_key_file is not None:
        password = k.ssl_key_password.get_secret_value() if k.ssl_key_password else None
        context.load_cert_chain(str(k.ssl_cert_file), str(k.ssl_key_file), password)
    return context


def faust_credentials(k: KafkaSettings) -> Any:
    """faust's ``broker_credentials`` for ``k`` (None for PLAINTEXT)."""
    import faust  # the workers' dependency; the CLI's clients need only client_config

    context = ssl_context(k)
    if k.security_protocol.startswith("SASL_"):
        assert k.sasl_username and k.sasl_password, "KafkaSettings validates this"
        return faust.SASLCredentials(
            username=k.sasl_username,
            password=k.sasl_password.get_secret_value(),
            ssl_context=context,
            mechanism=k.sasl_mechanism,
        )
    if context is not None:
        return faust.SSLCredentials(context)
    return None
