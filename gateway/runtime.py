"""``gateway serve``: one process with the HTTP and MLLP listeners, the ingest writer, the
outbox relay and (role hub/all) the projector.

Stores per role: an edge keeps the lean edge store, a hub the hub store (history, search
index, audit trail, exports), ``all`` both (``Gateway.store`` the edge's, where the ingest,
``/admin`` and the lab exports work; ``Gateway.hub_store`` the hub's, which the FHIR API,
AuditEvent, Group and ``$export`` serve), joined by the embedded bus and the projector as
in production. ``Gateway.settle()`` waits until the hub holds what was acknowledged.

Start order: stores (migrated; role all: an old single database converted first, see
``gateway.store.split``) → site files → pseudonym key → bus → ingest → listeners.
SIGTERM/SIGINT: stop accepting, finish in-flight messages, close cleanly. SIGHUP or
``POST /admin/reload`` (what ``gateway reload`` calls): reload the site files (validated first;
the old ones stay on error) without dropping connections. Once ready, ``gateway.pid`` in the
data directory names the process and its HTTP address (``gateway.pidfile``).
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import signal
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import uvicorn
from fastapi import FastAPI
from sqlalchemy.engine import make_url
from starlette.middleware.gzip import GZipMiddleware

from gateway import pidfile
from gateway.adapters.fhirsource import start_fhir_sources
from gateway.adapters.governance import admin_codes_router
from gateway.adapters.labexport.drop import start_drop_folders
from gateway.adapters.labexport.http import labexport_router
from gateway.adapters.loader import Network, load_network, reload_network
from gateway.adapters.studies import publish_studies
from gateway.adapters.terminology import capability_entries, terminology_router
from gateway.api.admin import admin_router, bus_admin_router, reload_router
from gateway.api.app import create_app
from gateway.api.connections import guarded_protocol
from gateway.api.counters import counters_router
from gateway.api.fhir import fhir_router, install_fhir_errors
from gateway.api.fhir.budgets import RequestBudgets
from gateway.api.fhir.export import export_router
from gateway.api.fhir.operations import capability_operations, operations_router
from gateway.api.fhir.views import CAPABILITY_ENTRY as VIEW_CAPABILITY
from gateway.api.fhir.views import views_router, with_view_operations
from gateway.api.ingest import hl7v2_router
from gateway.api.limits import BodyLimits, default_limits
from gateway.audit import CAPABILITY_ENTRY, AuditTrail, audit_router, install_audit
from gateway.audit.event import system_facts
from gateway.bus import start_bus_components
from gateway.bus.process import ProjectorJob
from gateway.bus.projector import HubProjector
from gateway.config import Settings
from gateway.console import Console, console_router
from gateway.errors import ConfigError
from gateway.export.manager import ExportManager
from gateway.failures import FailureCounters
from gateway.hl7 import ack as acks
from gateway.hl7 import batch
from gateway.hl7.check import inbound_errors
from gateway.hl7.mllp import MllpServer, Peer, server_ssl_context
from gateway.ingest import IngestService
from gateway.ingest.outcome import Outcome, msa_code
from gateway.mapping.pseudonym import load_or_create_key, read_key
from gateway.observability import logs, sources
from gateway.observability.access import AccessMiddleware, access_log, log_mllp
from gateway.observability.alerts import Alerts, AlertSettings
from gateway.observability.facts import message_facts
from gateway.observability.metrics import GatewayMetrics
from gateway.observability.routes import alerts_router, metrics_router
from gateway.observability.watch import BusWatch
from gateway.security import senders
from gateway.security.files import private_umask, secure_data_dir
from gateway.security.install import Auth, build_auth
from gateway.security.routes import auth_router
from gateway.security.settings import is_loopback
from gateway.store.audit import AuditLog
from gateway.store.exports import recorded_restriction
from gateway.store.split import convert_single_database, prepare_hub, refuse_unconverted
from gateway.store.sql import SqlStore
from gateway.subscriptions import CAPABILITY_ENTRY as SUBSCRIPTION_ENTRY
from gateway.subscriptions import start_subscriptions, subscription_router

log = logging.getLogger(__name__)
DEFAULT_PASSWORDS = frozenset({"change-me", "changeme"})
STUDIES_SETTLE = 10.0  # s the start waits for the published studies to reach the hub
ANY_ADDRESS = frozenset({"0.0.0.0", "::"})  # noqa: S104 - compared with, not bound


class _QuietServer(uvicorn.Server):
    """uvicorn without its own signal handlers: the runtime owns the signals."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


class MllpHandler:
    """Adapts the MLLP listener to the ingest service."""

    def __init__(self, service: IngestService, max_size: int,
                 require_client_cert: bool = False) -> None:
        self.service = service
        self.max_size = max_size
        self.require_client_cert = require_client_cert

    async def handle(self, frame: bytes, peer: Peer) -> list[bytes]:
        started = time.perf_counter()
        answers = await self._answer(frame, peer)
        if access_log.isEnabledFor(logging.INFO):
            facts = message_facts(frame, self.service.network, self.service.key)
            log_mllp(facts, msa_code(answers), time.perf_counter() - started, peer)
        return answers

    async def _answer(self, frame: bytes, peer: Peer) -> list[bytes]:
        if self.require_client_cert and (
                refused := senders.mllp_refusal(self.service.network, frame, peer)):
            return [refused]
        if batch.is_batch(frame):
            _, answer = await batch.handle_batch(self.service, frame, "mllp", _now())
            return [answer]
        outcome = await self.service.handle(frame, transport="mllp")
        return outcome.responses

    def oversize(self, head: bytes, peer: Peer) -> list[bytes]:
        header = acks.AckHeader.from_raw(head)
        texts = acks.build_acks(header, [acks.oversize_error(self.max_size)])
        return [acks.encode_ack(text, header.charset) for text in texts]


@dataclass
class Gateway:
    settings: Settings
    store: SqlStore | None = None  # the node's own store; role all: the edge's
    hub_store: SqlStore | None = None  # what the FHIR API serves (role hub: ``store``)
    network: Network | None = None
    service: IngestService | None = None
    mllp: MllpServer | None = None
    http: uvicorn.Server | None = None
    bus: Any = None
    auth: Auth | None = None
    audit: AuditTrail | None = None
    exports: ExportManager | None = None
    subscriptions: Any = None  # gateway.subscriptions.SubscriptionService (hub, all)
    extras: list[Any] = field(default_factory=list)
    budgets: RequestBudgets = field(default_factory=RequestBudgets)
    pid_file: Path | None = None
    failures: FailureCounters = field(default_factory=FailureCounters)
    metrics: GatewayMetrics = field(default_factory=GatewayMetrics)
    alerts: Alerts | None = None
    tracing: Any = None  # gateway.observability.tracing.Tracing with --otel
    _stop: asyncio.Event = field(default_factory=asyncio.Event)

    @property
    def http_port(self) -> int:
        """The bound HTTP port (differs from the setting when that is 0)."""
        assert self.http is not None and self.http.servers
        return int(self.http.servers[0].sockets[0].getsockname()[1])

    @property
    def ready(self) -> bool:
        http_ok = self.http is not None and self.http.started
        mllp_ok = self.mllp is not None or self.settings.role == "hub"
        return http_ok and mllp_ok

    async def start(self) -> None:
        s = self.settings
        secure_data_dir(s.data_dir)
        self.network = load_network(s.sites)
        self.auth = await asyncio.to_thread(build_auth, s.auth, s.host, self.network,
                                            s.data_dir)
        await asyncio.to_thread(self._open_stores)
        assert self.store is not None
        key = (read_key(s.pseudonym_key_file) if s.pseudonym_key_file
               else load_or_create_key(s.data_dir))
        self.audit = AuditTrail(AuditLog(self.trail_store), node=s.node_id, key=key).start()
        self.bus = await self._start_bus()
        if s.otel or self.tracing is not None:
            self._start_tracing()
        self.service = IngestService(
            self.store, self.network, key, node_id=s.node_id, batch_max=s.batch_max,
            accepting=getattr(self.bus, "accepting", lambda: True),
            on_commit=getattr(self.bus, "notify", lambda rows: None),
            strict_check=inbound_errors,
            message_time_budget=s.message_time_budget or None,
            max_resources=s.max_resources_per_message or None)
        self.service.start()
        self.service.observers.append(self._observe_message)
        self._start_observability()
        if s.role == "all" and isinstance(self.bus.projector, HubProjector):
            # one process, one interpreter: the projector gives way to a busy ingest
            # (bench/ingest.py: ACK rate of all against edge)
            service = self.service
            self.bus.projector.busy = lambda: service.waiting() > 0
        if s.role != "hub":
            await asyncio.to_thread(publish_studies, self.store, self.network.studies,
                                    s.node_id)
        if s.role == "all" and not await self.settle(within=STUDIES_SETTLE):
            # every configured study is in the FHIR API from the start, normally; a long
            # backlog on the bus (a first start after a conversion) may take longer
            log.warning("the hub store is still catching up with the bus")
        if self.hub_store is not None:
            self.exports = ExportManager(
                self.hub_store, s.data_dir, network_key=key,
                retention_hours=s.export_retention_hours, max_active=s.export_max_active,
                restriction=recorded_restriction)
            await asyncio.to_thread(self.exports.start)
            self.subscriptions = await start_subscriptions(self.hub_store, s,
                                                           self.audit.record, self.auth)
        await self._start_http()
        if s.role != "hub":
            await self._start_mllp()
            self._start_file_sources()
        # everything loaded so far (modules, site files, schemas) lives as long as the
        # process: out of the collector's way, so that the collections that the mapping's
        # short-lived dicts cause do not walk it again and again (ACK latency tail)
        gc.freeze()
        if s.public_url is None and s.role != "edge" and s.host in ANY_ADDRESS:
            log.warning("no --public-url: fullUrl and paging links name %s, which clients "
                        "cannot reach; set the public address", self.public_url)
        self.auth.announce(s.host)
        self.pid_file = pidfile.write(s.data_dir, s.host, self.http_port)
        log.info("gateway ready: role %s, HTTP %s:%d, MLLP %s", s.role, s.host,
                 self.http_port, f"{s.host}:{self.mllp.port}" if self.mllp else "off")

    def _open_stores(self) -> None:
        """The edge store (lean: no search index, no history) and/or the hub store, each
        migrated; role all converts a data directory's old single database first."""
        s = self.settings
        edge_url = s.resolved_database_url() if s.role != "hub" else None
        hub_url = s.hub_url()
        for url in filter(None, (edge_url, hub_url)):
            _refuse_default_password(url)
        if s.role == "all":
            assert edge_url is not None and hub_url is not None
            if s.hub_database_url is None:
                convert_single_database(edge_url, hub_url)
            else:
                refuse_unconverted(edge_url, hub_url)
        if edge_url is not None:
            self.store = SqlStore(edge_url, edge=True)
            self.store.migrate()
        if hub_url is not None:
            prepare_hub(hub_url)
            self.hub_store = SqlStore(hub_url)
            self.hub_store.migrate()
            self.store = self.store or self.hub_store

    @property
    def trail_store(self) -> SqlStore:
        """Where the audit trail is kept: the hub's store, an edge's own."""
        store = self.hub_store or self.store
        assert store is not None
        return store

    def _start_tracing(self) -> None:
        from gateway.observability.tracing import Tracing

        if self.tracing is None:  # a test may bring its own (an in-memory exporter)
            self.tracing = Tracing(node=self.settings.node_id)
        for part in ("relay", "hub_relay", "projector"):
            if (component := getattr(self.bus, part, None)) is not None:
                component.tracer = self.tracing

    def _start_observability(self) -> None:
        """Metrics sources and the alert loop (before the HTTP app, which serves both)."""
        assert self.store is not None and self.service is not None
        s, service = self.settings, self.service
        watch = BusWatch(self.bus, self.store) if self.bus is not None else None
        self.alerts = Alerts(AlertSettings(s.alert_outbox_percent,
                                           s.alert_projector_lag_seconds, s.alert_interval),
                             self.network, self.store, watch, site_rules=s.role != "hub")
        self.extras.append(self.alerts.start())
        self.metrics.add_source(sources.database_source(self.store))
        if watch is not None:
            self.metrics.add_source(sources.bus_source(watch))
        self.metrics.add_source(sources.counters_source(
            self.failures, lambda: self.mllp, lambda: dict(service.over_budget)))
        self.metrics.add_source(sources.alerts_source(self.alerts))

    def _observe_message(self, raw: bytes, transport: str, outcome: Outcome,
                         seconds: float) -> None:
        assert self.service is not None
        facts = message_facts(raw, self.service.network, self.service.key,
                              hashed=self.tracing is not None)
        self.metrics.observe_message(facts.site, facts.message_type, transport,
                                     outcome.status, outcome.ack_code, seconds, outcome.reason)
        if self.tracing is not None:
            self.tracing.receipt(facts.digest, seconds, {
                "gateway.site": facts.site, "hl7v2.message_type": facts.message_type,
                "hl7v2.ack_code": outcome.ack_code, "gateway.transport": transport},
                outcome.commit_ns)

    def _observe_import(self, site: str, report: Any) -> None:
        self.metrics.observe_import(site, report.rows, report.accepted)

    async def _start_bus(self) -> Any:
        assert self.store is not None
        s = self.settings
        hub = self.hub_store if s.role == "all" else None
        job = None
        traced = s.otel or self.tracing is not None
        if hub is not None and s.projector == "process" and traced:
            # one trace spans receipt → commit → relay → projection: one process's tracer
            log.info("tracing on: the hub projector runs in this process (--projector inline)")
        if hub is not None and s.projector == "process" and not traced:
            job = ProjectorJob(s.bus, hub.url, str(s.data_dir), nice=s.projector_nice,
                               log_level=logging.getLevelName(logging.getLogger().level),
                               log_format=logs.current_format())
        return await start_bus_components(s.bus, self.store, s.role, hub_store=hub,
                                          data_dir=s.data_dir, projector_job=job)

    async def settle(self, within: float = 10.0) -> bool:
        """Read-your-writes: wait until what the stores had committed (every message
        acknowledged so far) is in the hub store; False if ``within`` seconds passed first."""
        if self.bus is None:
            return True
        return bool(await self.bus.settle(within))

    def _routers(self) -> list[Any]:
        assert self.service is not None and self.store is not None and self.network
        assert self.auth is not None
        assert self.alerts is not None
        routers: list[Any] = [auth_router(self.auth.tokens, lambda: self.public_url),
                              audit_router(AuditLog(self.trail_store)),  # every role has one
                              metrics_router(self.metrics), alerts_router(self.alerts)]
        if self.settings.role != "hub":
            routers += [hl7v2_router(self.service), admin_router(self.service),
                        admin_codes_router(self.store, self.network),
                        labexport_router(self.store, self.network, self.service.key,
                                         on_report=self._observe_import),
                        counters_router(self.service, self.failures, lambda: self.mllp)]
        routers.append(reload_router(lambda: self.reload_sites("POST /admin/reload"),
                                     lambda: len(self.network.sites) if self.network else 0))
        if self.bus is not None:
            routers.append(bus_admin_router(self.bus))
        routers.append(console_router(self._console()))
        if self.hub_store is not None:
            assert self.exports is not None
            # the terminology, export and operation routes come before the FHIR API's
            # generic /fhir/{type}/{id}
            routers += [export_router(self.exports, lambda: f"{self.public_url}/fhir"),
                        operations_router(self.hub_store, lambda: f"{self.public_url}/fhir"),
                        views_router(self.hub_store, lambda: f"{self.public_url}/fhir"),
                        subscription_router(self.hub_store, self.subscriptions,
                                            lambda: f"{self.public_url}/fhir"),
                        terminology_router(self.network, lambda: f"{self.public_url}/fhir"),
                        fhir_router(self.hub_store, origin=self.settings.node_id,
                                    capability_resources=[*capability_entries(),
                                                          CAPABILITY_ENTRY,
                                                          VIEW_CAPABILITY, SUBSCRIPTION_ENTRY],
                                    security=self.auth.capability_security(),
                                    base_url_from_request=False,
                                    base_url=lambda: f"{self.public_url}/fhir",
                                    budgets=self.budgets,
                                    capability_operations=with_view_operations(
                                        capability_operations()))]
        return routers

    def _console(self) -> Console:
        """The web console's parts; its cookies are Secure unless it is on loopback alone
        (or behind an https --public-url)."""
        s = self.settings
        assert self.store is not None and self.network is not None and self.auth is not None
        behind_tls = (s.public_url or "").startswith("https:")
        return Console(self.store, self.network, self.auth,
                       secure_cookies=behind_tls or not is_loopback(s.host),
                       service=self.service if s.role != "hub" else None, bus=self.bus,
                       public_url=lambda: self.public_url, hub_store=self.hub_store)

    def _start_file_sources(self) -> None:
        assert self.store is not None and self.network is not None and self.service
        s = self.settings
        self.extras.append(start_drop_folders(s.data_dir, self.store, self.network,
                                              self.service.key, failures=self.failures,
                                              on_report=self._observe_import))
        self.extras += start_fhir_sources(self.network, self.store, self.service.key,
                                          s.data_dir, now=_now_instant, failures=self.failures)

    @property
    def public_url(self) -> str:
        """``--public-url``, else this listener's own address (never a request's Host)."""
        s = self.settings
        return (s.public_url or f"http://{s.host}:{self.http_port}").rstrip("/")

    async def _start_http(self) -> None:
        assert self.auth is not None and self.audit is not None
        s, trail, auth = self.settings, self.audit, self.auth
        self.budgets.seconds = s.request_time_budget
        app = create_app(routers=self._routers(), ready=lambda: self.ready,
                         setup=[install_fhir_errors, _gzip, self._body_limits, auth.install,
                                # outside authentication: logs its 401/403 and the caller
                                self._access_log,
                                lambda app: install_audit(app, trail)],  # last: outermost
                         health={"auth": lambda: auth.mode, "audit": trail.status})
        app.state.alerts = self.alerts  # the console's banner (gateway.observability.alerts)
        protocol = guarded_protocol(max_connections=s.http_max_connections,
                                    header_timeout=s.http_header_timeout,
                                    body_timeout=s.http_body_timeout)
        config = uvicorn.Config(app, host=s.host, port=s.http_port, http=protocol,
                                log_level="warning", lifespan="off", access_log=False,
                                server_header=False, timeout_graceful_shutdown=5)
        self.http = _QuietServer(config)
        task = asyncio.create_task(self.http.serve(), name="http")
        self.extras.append(task)
        while not self.http.started:
            if task.done():
                task.result()
                raise ConfigError(f"HTTP port {self.settings.http_port} could not be opened")
            await asyncio.sleep(0.02)

    async def _start_mllp(self) -> None:
        s = self.settings
        assert self.service is not None
        ssl_ctx = None
        if s.auth.mllp_require_client_cert and not s.mllp_tls_client_ca:
            raise ConfigError("--mllp-require-client-cert needs --mllp-tls-cert and "
                              "--mllp-tls-client-ca (mutual TLS)")
        if s.auth.mllp_require_client_cert and (mute := senders.sites_without_senders(
                self.service.network)):
            log.warning("no 'senders' in the site files of %s: their MLLP messages get AR",
                        ", ".join(mute))
        if s.mllp_tls_cert:
            key = str(s.mllp_tls_key) if s.mllp_tls_key else None
            client_ca = str(s.mllp_tls_client_ca) if s.mllp_tls_client_ca else None
            ssl_ctx = server_ssl_context(str(s.mllp_tls_cert), key, client_ca)
        handler = MllpHandler(self.service, s.max_message_size,
                              s.auth.mllp_require_client_cert)
        self.mllp = MllpServer(handler, s.host,
                               s.mllp_port, ssl_context=ssl_ctx,
                               max_message_size=s.max_message_size,
                               idle_timeout=s.idle_timeout,
                               max_connections=s.mllp_max_connections,
                               frame_timeout=s.mllp_frame_timeout)
        await self.mllp.start()

    def reload_sites(self, via: str = "SIGHUP") -> ConfigError | None:
        """SIGHUP and ``POST /admin/reload``: re-read the site files in place (every holder
        sees them); a bad file leaves the running configuration as it was, and is returned.
        Connections are not dropped."""
        if self.network is None:
            return ConfigError("the gateway is not started")
        error = reload_network(self.network, self.settings.sites)
        if error is None and self.store is not None and self.settings.role != "hub":
            # a study added or changed in studies.yaml is a ResearchStudy now, as at start
            publish_studies(self.store, self.network.studies, self.settings.node_id)
        if self.auth is not None:
            self.auth.reload_clients(self.network)
        if self.audit is not None:
            self.audit.record(system_facts(
                "reload", ok=error is None, when=time.time(),
                description=f"site files reloaded ({via})" if error is None
                else f"site files not reloaded ({via}): a site file is invalid"))
        return error

    def request_stop(self) -> None:
        self._stop.set()

    async def wait(self) -> None:
        await self._stop.wait()

    def _access_log(self, app: FastAPI) -> None:
        app.add_middleware(AccessMiddleware, metrics=self.metrics, tracing=self.tracing)

    def _body_limits(self, app: FastAPI) -> None:
        app.add_middleware(BodyLimits, limits=default_limits(self.settings.max_message_size))

    async def stop(self) -> None:
        if self.pid_file is not None:
            pidfile.remove(self.pid_file)
        if self.mllp is not None:
            await self.mllp.close()
        if self.http is not None:
            self.http.should_exit = True
        # running searches end now: their worker threads would keep the process alive
        cancelled = await asyncio.to_thread(self.budgets.cancel_all, "shutdown")
        if cancelled:
            log.info("stopping: %d running queries cancelled", cancelled)
        for task in self.extras:
            if task.get_name() != "http":
                task.cancel()
            with contextlib.suppress(Exception, asyncio.CancelledError):
                await asyncio.wait_for(task, 10)
        if self.exports is not None:
            await asyncio.to_thread(self.exports.stop)
        if self.subscriptions is not None:
            await self.subscriptions.stop()
        if self.service is not None:
            await asyncio.to_thread(self.service.stop)
        if self.audit is not None:
            await asyncio.to_thread(self.audit.stop)
        if self.bus is not None:
            await self.bus.stop()
        for store in {id(s): s for s in (self.store, self.hub_store) if s}.values():
            store.close()
        if self.tracing is not None:
            self.tracing.shutdown()
        log.info("gateway stopped")


def _gzip(app: FastAPI) -> None:
    app.add_middleware(GZipMiddleware, minimum_size=1000)


def _now() -> datetime:
    return datetime.now(UTC)


def _now_instant() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _refuse_default_password(url: str) -> None:
    """The compose file's old fallback password must not reach a real deployment."""
    if make_url(url).password in DEFAULT_PASSWORDS:
        raise ConfigError("the database URL uses a default password; set a password of "
                          "your own (docker/compose.yaml: POSTGRES_PASSWORD)")


_BACKGROUND: set[asyncio.Task[Any]] = set()


def _background(work: Any) -> None:
    """Run ``work`` (a coroutine) as a task kept referenced until it ends."""
    task = asyncio.ensure_future(work)
    _BACKGROUND.add(task)
    task.add_done_callback(_BACKGROUND.discard)


async def serve(settings: Settings) -> None:
    private_umask()  # files and directories the gateway creates: 0600 / 0700
    gateway = Gateway(settings)
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, gateway.request_stop)
    # off the event loop: a reload reads files and writes the studies file's changes
    loop.add_signal_handler(signal.SIGHUP, lambda: _background(
        asyncio.to_thread(gateway.reload_sites)))
    try:
        await gateway.start()
        await gateway.wait()
    finally:
        await gateway.stop()
