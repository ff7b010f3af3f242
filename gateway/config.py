"""Settings of ``gateway serve``: command-line flags, each with a ``GATEWAY_*`` environment
equivalent (flag ``--http-port`` ↔ ``GATEWAY_HTTP_PORT``). Flags win over the environment,
the environment over the defaults."""

from __future__ import annotations

import argparse
import os
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy.engine import make_url

from gateway.adapters.loader import EXAMPLE_SITES
from gateway.bus import settings as bus_settings
from gateway.bus.settings import BusSettings
from gateway.errors import ConfigError
from gateway.security import settings as auth_settings
from gateway.security.settings import AuthSettings

Role = Literal["edge", "hub", "all"]


class Settings(BaseModel):
    model_config = ConfigDict(extra="ignore")

    host: str = "127.0.0.1"
    http_port: int = 8080
    mllp_port: int = 2575
    data_dir: Path = Path("./var")
    database_url: str | None = Field(default=None, description="default: SQLite in data dir")
    hub_database_url: str | None = Field(
        default=None, description="role all: the hub store (default: beside the edge store)")
    sites: Path = EXAMPLE_SITES
    role: Role = "all"
    # role all: the hub projector in a child process below the ingest's priority
    # (gateway.bus.process), or in this process ("inline")
    projector: Literal["process", "inline"] = "process"
    projector_nice: int = Field(default=19, ge=0, le=19)
    # MLLP
    mllp_tls_cert: Path | None = None
    mllp_tls_key: Path | None = None
    mllp_tls_client_ca: Path | None = None
    max_message_size: int = 10 * 2**20
    idle_timeout: float = 300.0
    mllp_max_connections: int = 100
    mllp_frame_timeout: float = 120.0
    # ingest
    pseudonym_key_file: Path | None = None
    batch_max: int = Field(default=64, description="messages per group commit, at most")
    # Bulk Data $export (gateway.export)
    export_retention_hours: float = 24.0
    export_max_active: int = 2
    # R4 Subscriptions (gateway.subscriptions)
    subscription_hosts: str | None = Field(
        default=None, description="comma-separated hosts subscription endpoints may name "
        "(default: any; docs/security.md)")
    subscription_max_failures: int = Field(default=10, gt=0)
    subscription_max_backoff: float = Field(default=60.0, gt=0)
    # HTTP bounds and public address (gateway.api.connections, gateway.api.limits)
    public_url: str | None = Field(default=None, pattern=r"^https?://",
                                   description="default: http://<host>:<port>")
    request_time_budget: float = Field(default=10.0, gt=0)
    http_max_connections: int = Field(default=1000, gt=0)
    http_header_timeout: float = Field(default=10.0, gt=0)
    http_body_timeout: float = Field(default=30.0, gt=0)
    message_time_budget: float = Field(
        default=10.0, description="seconds one message may spend in mapping (0: no budget)")
    max_resources_per_message: int = Field(
        default=5_000, description="FHIR resources one message may write (0: no limit)")
    # alerts (gateway.observability.alerts): the rules not in site files
    alert_outbox_percent: float = Field(default=80.0, gt=0, le=100)
    alert_projector_lag_seconds: float = Field(default=300.0, gt=0)
    alert_interval: float = Field(default=30.0, gt=0)
    # OpenTelemetry traces (gateway.observability.tracing): --otel or
    # OTEL_EXPORTER_OTLP_ENDPOINT; needs the [otel] extra
    otel: bool = False
    # Kafka, topics, outbox bound, node id: gateway.bus.settings
    bus: BusSettings = Field(default_factory=BusSettings)
    # clients file, OIDC issuer, secure-by-default: gateway.security.settings
    auth: AuthSettings = Field(default_factory=AuthSettings)

    @property
    def node_id(self) -> str:
        return self.bus.node_id

    def resolved_database_url(self) -> str:
        """The store of this role; in ``all`` the edge store (inbox, outbox, current
        versions), the one the offline tools (replay, import) work on."""
        if self.database_url:
            return self.database_url
        return f"sqlite:///{(self.data_dir / 'gateway.db').resolve()}"

    def hub_url(self) -> str | None:
        """The store the FHIR API serves: role hub its own, role all ``--hub-database-url``
        or, by default, beside the edge store (``hub_beside``); an edge has none."""
        if self.role == "hub":
            return self.resolved_database_url()
        if self.role == "all":
            return self.hub_database_url or hub_beside(self.resolved_database_url())
        return None


HUB_SCHEMA = "hub"


def hub_beside(edge_url: str) -> str:
    """Role all's default hub store, derived from the edge store's URL: SQLite, a second
    file beside it (``gateway.db`` → ``gateway-hub.db``); PostgreSQL, the schema ``hub`` of
    the same database (libpq ``options=-csearch_path=hub``: one database to back up, and no
    right beyond the database owner's to create it)."""
    url = make_url(edge_url)
    if url.get_backend_name() == "sqlite":
        path = Path(url.database or "")
        if not url.database or url.database == ":memory:":
            raise ConfigError("role all needs a SQLite file, not an in-memory database")
        hub = path.with_name(f"{path.stem}-hub{path.suffix or '.db'}")
        return url.set(database=str(hub)).render_as_string(hide_password=False)
    given = url.query.get("options")
    options = " ".join(filter(None, [given if isinstance(given, str) else None,
                                     f"-csearch_path={HUB_SCHEMA}"]))
    return url.update_query_dict({"options": options}).render_as_string(hide_password=False)


_FLAGS: list[tuple[str, str, type, str]] = [
    ("--host", "host", str, "address to listen on (default 127.0.0.1)"),
    ("--http-port", "http_port", int, "HTTP port: FHIR API, /hl7v2, /admin (default 8080)"),
    ("--mllp-port", "mllp_port", int, "MLLP port for HL7 v2 (default 2575)"),
    ("--data-dir", "data_dir", Path, "data directory (default ./var)"),
    ("--database-url", "database_url", str,
     "sqlite:///file or postgresql://… (default: SQLite in the data dir)"),
    ("--hub-database-url", "hub_database_url", str,
     "role all: the hub store's URL (default: SQLite <name>-hub.db beside the edge's file; "
     "PostgreSQL: schema hub of the same database)"),
    ("--sites", "sites", Path, "directory of site files (default: the shipped examples)"),
    ("--role", "role", str, "edge | hub | all (default all)"),
    ("--projector", "projector", str,
     "role all: process (default: the hub projector in a child process, below the "
     "ingest's priority) or inline (in the gateway's own process)"),
    ("--projector-nice", "projector_nice", int,
     "role all, --projector process: the child's nice increment, 0-19 (default 19)"),
    ("--mllp-tls-cert", "mllp_tls_cert", Path, "PEM certificate (chain): MLLP over TLS"),
    ("--mllp-tls-key", "mllp_tls_key", Path,
     "PEM private key, when not in the --mllp-tls-cert file"),
    ("--mllp-tls-client-ca", "mllp_tls_client_ca", Path,
     "PEM CA bundle: require client certificates (mutual TLS)"),
    ("--max-message-size", "max_message_size", int, "bytes; larger frames get AR (10 MB)"),
    ("--idle-timeout", "idle_timeout", float, "seconds before an idle MLLP connection closes"),
    ("--mllp-max-connections", "mllp_max_connections", int,
     "open MLLP connections at most; more are closed at once (default 100)"),
    ("--mllp-frame-timeout", "mllp_frame_timeout", float,
     "seconds a started MLLP block may take to end before the connection closes (120)"),
    ("--pseudonym-key-file", "pseudonym_key_file", Path,
     "HMAC key file for pseudonyms (default: generated in the data dir)"),
    ("--export-retention-hours", "export_retention_hours", float,
     "hours a finished $export (manifest and files) is kept (default 24)"),
    ("--export-max-active", "export_max_active", int,
     "$export jobs running at once; more get 429 (default 2)"),
    ("--subscription-hosts", "subscription_hosts", str,
     "comma-separated hosts that Subscription endpoints may name (default: any host)"),
    ("--subscription-max-failures", "subscription_max_failures", int,
     "failed notification attempts in a row before a Subscription is set to error (10)"),
    ("--subscription-max-backoff", "subscription_max_backoff", float,
     "seconds between notification retries, at most (60)"),
    ("--public-url", "public_url", str,
     "the gateway's public root URL, e.g. https://gw.example.org (fullUrl, paging links; "
     "default http://<host>:<http-port>); never taken from a request's Host"),
    ("--request-time-budget", "request_time_budget", float,
     "seconds a FHIR search may run before it is cancelled in the database (10)"),
    ("--http-max-connections", "http_max_connections", int,
     "open HTTP connections at most; more are answered 503 (1000)"),
    ("--http-header-timeout", "http_header_timeout", float,
     "seconds for a request's headers to arrive complete, else 408 (10)"),
    ("--http-body-timeout", "http_body_timeout", float,
     "seconds a request body may pause before the connection is closed (30)"),
    ("--message-time-budget", "message_time_budget", float,
     "seconds one message may spend in mapping before it gets AE (default 10; 0: none)"),
    ("--max-resources-per-message", "max_resources_per_message", int,
     "FHIR resources one message may write; more gets AE (default 5000; 0: none)"),
    ("--alert-outbox-percent", "alert_outbox_percent", float,
     "alert when the outbox holds more than this share of --outbox-max (default 80)"),
    ("--alert-projector-lag-seconds", "alert_projector_lag_seconds", float,
     "alert when the hub projector has been behind for longer (default 300)"),
    ("--alert-interval", "alert_interval", float, "seconds between alert checks (30)"),
]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    for flag, dest, kind, text in _FLAGS:
        env = "GATEWAY_" + dest.upper()
        parser.add_argument(flag, dest=dest, type=kind, default=None, help=f"{text} [{env}]")
    parser.add_argument("--otel", dest="otel", action="store_true", default=None,
                        help="OpenTelemetry traces to OTEL_EXPORTER_OTLP_ENDPOINT (needs the "
                        "[otel] extra; on by itself when that variable is set) [GATEWAY_OTEL]")
    bus_settings.add_arguments(parser)
    auth_settings.add_arguments(parser)


def settings_from(args: argparse.Namespace, environ: dict[str, str] | None = None) -> Settings:
    environ = dict(os.environ if environ is None else environ)
    values: dict[str, Any] = {}
    for _, dest, _, _ in _FLAGS:
        given = getattr(args, dest, None)
        if given is not None:
            values[dest] = given
        elif (env := environ.get("GATEWAY_" + dest.upper())) is not None:
            values[dest] = env
    otel = getattr(args, "otel", None)
    values["otel"] = bool(otel) or environ.get("GATEWAY_OTEL", "").lower() in (
        "1", "true", "yes") or bool(environ.get("OTEL_EXPORTER_OTLP_ENDPOINT"))
    values["bus"] = bus_settings.from_sources(args, environ)
    values["auth"] = auth_settings.from_sources(args, environ)
    return Settings.model_validate(values)
