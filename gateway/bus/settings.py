"""Bus settings: a pydantic model the global settings embed, plus its command-line flags.

No ``kafka_bootstrap`` → the embedded durable bus (a log in ``<data dir>/bus.db`` unless
``embedded_bus_url`` says otherwise).
"""

from __future__ import annotations

import argparse
import socket
from typing import Any, Literal

from pydantic import BaseModel, Field, SecretStr, ValidationError, model_validator

from gateway.errors import ConfigError

SecurityProtocol = Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"]
SaslMechanism = Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"]


class BusSettings(BaseModel):
    kafka_bootstrap: str | None = Field(
        None, description="host:port[,host:port…]; none = the embedded bus")
    topic_prefix: str = Field("gateway", pattern=r"^[A-Za-z0-9._-]+$")
    kafka_security_protocol: SecurityProtocol = "PLAINTEXT"
    kafka_sasl_mechanism: SaslMechanism | None = None
    kafka_sasl_username: str | None = None
    kafka_sasl_password: SecretStr | None = None
    kafka_ssl_cafile: str | None = None
    kafka_ssl_certfile: str | None = None
    kafka_ssl_keyfile: str | None = None
    kafka_request_timeout: float = Field(30.0, gt=0, description="seconds per publish attempt")
    kafka_session_timeout: float = Field(
        10.0, gt=0, description="consumer group session timeout, seconds")
    topic_partitions: int = Field(3, ge=1)
    topic_replication: int = Field(1, ge=1)
    outbox_max: int = Field(100_000, ge=1, description="pending outbox rows before refusing")
    outbox_retention_days: float = Field(
        30.0, ge=0, description="published outbox rows older than this are deleted "
        "(0: kept forever); on an edge they are its only history")
    relay_batch_size: int = Field(500, ge=1)
    relay_max_backoff: float = Field(30.0, gt=0)
    node_id: str = Field(default_factory=socket.gethostname)
    consumer_group: str = "gateway-hub"
    embedded_bus_url: str | None = Field(
        None, description="SQLAlchemy URL of the embedded bus log; default <data dir>/bus.db")
    embedded_retention_hours: float = Field(168.0, gt=0)

    @model_validator(mode="after")
    def _sasl_complete(self) -> BusSettings:
        if self.kafka_security_protocol.startswith("SASL_"):
            if not (self.kafka_sasl_mechanism and self.kafka_sasl_username
                    and self.kafka_sasl_password):
                raise ValueError("SASL needs --kafka-sasl-mechanism, -username and -password")
        return self


_FLAGS: dict[str, dict[str, Any]] = {
    "kafka_bootstrap": {"metavar": "HOST:PORT[,…]"},
    "topic_prefix": {},
    "kafka_security_protocol": {"choices": ["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"]},
    "kafka_sasl_mechanism": {"choices": ["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"]},
    "kafka_sasl_username": {},
    "kafka_sasl_password": {"help": "better: the GATEWAY_KAFKA_SASL_PASSWORD variable"},
    "kafka_ssl_cafile": {},
    "kafka_ssl_certfile": {},
    "kafka_ssl_keyfile": {},
    "topic_partitions": {"type": int},
    "topic_replication": {"type": int},
    "outbox_max": {"type": int},
    "outbox_retention_days": {"type": float},
    "node_id": {},
}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add ``--kafka-bootstrap``, ``--topic-prefix`` … (defaults None: unset keeps the model's)."""
    group = parser.add_argument_group("bus")
    for name, flags in _FLAGS.items():
        extra = {"help": BusSettings.model_fields[name].description, **flags}
        group.add_argument("--" + name.replace("_", "-"), dest=name, default=None, **extra)


def from_sources(args: argparse.Namespace | None = None,
                 env: dict[str, str] | None = None) -> BusSettings:
    """Settings from ``GATEWAY_<FIELD>`` environment variables, overridden by flags.

    Raises ConfigError naming the setting when a value is wrong."""
    values: dict[str, Any] = {}
    for name in BusSettings.model_fields:
        if env and (value := env.get("GATEWAY_" + name.upper())) not in (None, ""):
            values[name] = value
        if args is not None and getattr(args, name, None) is not None:
            values[name] = getattr(args, name)
    try:
        return BusSettings(**values)
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(map(str, e['loc'])) or 'bus'}: {e['msg']}"
                             for e in exc.errors())
        raise ConfigError(f"bad bus settings: {problems}") from exc
