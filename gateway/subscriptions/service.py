"""The hub's subscription service: fan-out and one delivery task per live subscription.

* fan-out (``matching.fan_out``) polls the store's change queue every ``poll`` seconds (and
  at once while it is full), in a worker thread, and wakes the subscriptions that got
  notifications;
* each ``requested`` or ``active`` subscription has its own task: a receiver that is slow or
  down delays only its own notifications, never the ingest (which only writes the queue,
  in its own transaction) nor another subscription;
* ``requested`` → a handshake (a POST with no body) → ``active`` on a 2xx answer;
* ``active``: pending notifications in order, oldest first; payload none: one POST with no
  body for everything pending; payload ``application/fhir+json``: ``PUT endpoint/Type/id``
  with the matched version, one at a time, in order; deleted from the queue on 2xx only;
* a failed attempt (no 2xx, timeout, refused connection) waits ``min_backoff · 2^(n-1)``
  (at most ``max_backoff``) and tries again; after ``max_failures`` failures in a row the
  subscription becomes ``error`` with the last error in ``Subscription.error``;
  notifications keep queueing and go out when the client sets it back to
  ``requested``/``active``; ``off`` drops them;
* a heartbeat (POST, no body) when nothing was sent for the heartbeat period;
* each delivered batch is an AuditEvent (``subscription-notification``): the owner, the
  Subscription and the notified resources' references, never content.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import httpx
import orjson

from gateway.audit.event import SIGNAL, Facts
from gateway.bus.base import cancel_task
from gateway.errors import GatewayError, Gone
from gateway.fhir import FHIR_MEDIA_TYPE
from gateway.store.exports import restriction_of_record
from gateway.store.sql import SqlStore
from gateway.store.subscriptions import (
    LIVE,
    DeliveryRow,
    SubscriptionRow,
    delivered,
    get_subscription,
    list_subscriptions,
    pending,
    record_attempt,
    replace_subscription,
)
from gateway.subscriptions.matching import fan_out
from gateway.subscriptions.owners import Owners, effective_principal
from gateway.subscriptions.resource import (
    Spec,
    SubscriptionError,
    bounded_error,
    ended,
    parse,
)

log = logging.getLogger(__name__)
AUDIT_REFS = 50  # resource references named in one delivery's AuditEvent, at most
IDLE = 5.0  # s an idle subscription sleeps unless woken (new notifications, a change by
# its owner): then it looks at its end and its owner's registration again


@dataclass(frozen=True)
class DeliveryOptions:
    max_failures: int = 10
    min_backoff: float = 0.5
    max_backoff: float = 60.0
    timeout: float = 5.0  # s per HTTP request to a receiver
    poll: float = 0.05  # s between looks at the change queue while it is empty
    batch: int = 100  # notifications per attempt
    allowed_hosts: frozenset[str] | None = None  # None: any host (docs/security.md)

    def backoff(self, failures: int) -> float:
        return float(min(self.max_backoff, self.min_backoff * 2 ** min(failures - 1, 30)))


class Failed(Exception):
    """One attempt failed; the message (no receiver content) becomes Subscription.error."""


class SubscriptionService:
    def __init__(self, store: SqlStore, options: DeliveryOptions | None = None, *,
                 audit: Callable[[Facts], None] | None = None,
                 owners: Owners | None = None) -> None:
        self.store = store
        self.owners = owners  # the owners' current registrations (``owners``)
        self.options = options or DeliveryOptions()
        self.audit = audit
        self.delivered = 0  # notifications delivered since start
        self.last_error: str | None = None  # of the fan-out
        self._tasks: dict[str, asyncio.Task[None]] = {}
        self._events: dict[str, asyncio.Event] = {}
        self._last_sent: dict[str, float] = {}
        self._changed = asyncio.Event()
        self._loops: list[asyncio.Task[None]] = []
        self._http: httpx.AsyncClient | None = None

    async def start(self) -> SubscriptionService:
        self._http = httpx.AsyncClient(timeout=self.options.timeout, follow_redirects=False,
                                       trust_env=False)
        self._loops = [asyncio.create_task(self._fan_out_loop(), name="subscription-fan-out"),
                       asyncio.create_task(self._supervise(), name="subscription-supervisor")]
        return self

    async def stop(self) -> None:
        for task in [*self._loops, *self._tasks.values()]:
            await cancel_task(task)
        self._loops, self._tasks = [], {}
        if self._http is not None:
            await self._http.aclose()

    def touch(self, subscription_id: str) -> None:
        """A subscription was created or changed (the API): look at it now."""
        self._event(subscription_id).set()
        self._changed.set()

    def _event(self, subscription_id: str) -> asyncio.Event:
        return self._events.setdefault(subscription_id, asyncio.Event())

    # -- fan-out and supervision -----------------------------------------------------------------

    async def _fan_out_loop(self) -> None:
        delay = self.options.poll
        while True:
            try:
                woken = await asyncio.to_thread(fan_out, self.store, owners=self.owners)
                self.last_error, delay = None, self.options.poll
            except Exception as exc:  # noqa: BLE001 - the queue waits, nothing is lost
                self.last_error = (str(exc) if isinstance(exc, GatewayError)
                                   else f"unexpected {type(exc).__name__}")
                woken, delay = set(), min(self.options.max_backoff, delay * 2)
                log.warning("subscription fan-out failed (%s); retry in %.1fs",
                            self.last_error, delay)
            for sub in woken:
                self._event(sub).set()
            if not woken:
                await asyncio.sleep(delay)

    async def _supervise(self) -> None:
        """A task for each live subscription (found every second, or at once on ``touch``)."""
        while True:
            try:
                live = await asyncio.to_thread(list_subscriptions, self.store, statuses=LIVE)
            except Exception as exc:  # noqa: BLE001 - the store: look again in a second
                log.warning("subscriptions not listed (%s)", type(exc).__name__)
                live = []
            for done in [id for id, task in self._tasks.items() if task.done()]:
                del self._tasks[done]
                self._last_sent.pop(done, None)
                self._events.pop(done, None)
            for sub in live:
                task = self._tasks.get(sub.id)
                if task is None or task.done():
                    self._tasks[sub.id] = asyncio.create_task(
                        self._run(sub.id), name=f"subscription-{sub.id}")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._changed.wait(), 1.0)
            self._changed.clear()

    # -- one subscription ------------------------------------------------------------------------

    async def _run(self, sub_id: str) -> None:
        while True:
            try:
                if not await self._step(sub_id):
                    return
            except GatewayError as exc:  # the store: try again shortly
                log.warning("subscription %s: %s", sub_id, exc)
                await asyncio.sleep(self.options.min_backoff)
            except Exception:  # noqa: BLE001 - a bug must not end deliveries silently
                log.exception("subscription %s: unexpected failure", sub_id)
                await asyncio.sleep(self.options.max_backoff)

    async def _step(self, sub_id: str) -> bool:
        """One round for one subscription; False when it is no longer live."""
        row = await asyncio.to_thread(get_subscription, self.store, sub_id)
        if row is None or row.status not in LIVE:
            return False
        try:
            spec = parse(row.content, allowed_hosts=self.options.allowed_hosts)
        except SubscriptionError as exc:  # e.g. the allow-list changed since it was made
            await self._set_status(row, "error", bounded_error(str(exc)))
            return False
        if ended(spec.end):
            await self._set_status(row, "off", None)
            return False
        principal = effective_principal(row, self.owners)
        if principal is None:
            await self._set_status(row, "off", f"turned off: client {row.client_id} is no "
                                   f"longer registered or may no longer search {row.res_type}")
            return False
        wait = row.next_attempt_ms / 1000 - time.time()
        if wait > 0:
            await self._wait(sub_id, wait)
            return True
        if row.status == "requested":
            await self._attempt(row, self._handshake(row, spec))
            return True
        batch = await asyncio.to_thread(pending, self.store, sub_id, self.options.batch)
        if batch:
            await self._attempt(row, self._deliver(row, spec, batch, principal))
        elif spec.heartbeat and self._since_sent(sub_id) >= spec.heartbeat:
            await self._attempt(row, self._send(row, spec, "POST", spec.endpoint, None,
                                                "heartbeat"))
        else:
            await self._wait(sub_id, min(IDLE, spec.heartbeat - self._since_sent(sub_id))
                             if spec.heartbeat else IDLE)
        return True

    async def _wait(self, sub_id: str, seconds: float) -> None:
        event = self._event(sub_id)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(event.wait(), max(0.0, seconds))
        event.clear()

    def _since_sent(self, sub_id: str) -> float:
        return time.monotonic() - self._last_sent.setdefault(sub_id, time.monotonic())

    async def _attempt(self, row: SubscriptionRow, work: Any) -> None:
        try:
            await work
        except Failed as exc:
            await self._failed(row, str(exc))
            return
        if row.failures or row.error:
            await asyncio.to_thread(record_attempt, self.store, row.id, failures=0,
                                    next_attempt_ms=0, error=None)

    async def _failed(self, row: SubscriptionRow, message: str) -> None:
        failures = row.failures + 1
        error = bounded_error(f"{message} (attempt {failures})")
        if failures >= self.options.max_failures:
            row.failures = failures
            log.warning("subscription %s: %d failures in a row: error", row.id, failures)
            await self._set_status(row, "error", error)
            self._audit(row, ok=False, description=f"Subscription/{row.id} set to error "
                        f"after {failures} failed attempts", refs=[])
            return
        delay = self.options.backoff(failures)
        await asyncio.to_thread(record_attempt, self.store, row.id, failures=failures,
                                next_attempt_ms=int((time.time() + delay) * 1000), error=error)

    async def _set_status(self, row: SubscriptionRow, status: str, error: str | None) -> None:
        expected = row.version_id
        row.status, row.error = status, error
        if status == "active":
            row.failures, row.next_attempt_ms = 0, 0
        await asyncio.to_thread(replace_subscription, self.store, row,
                                expected_version=expected)

    # -- HTTP ------------------------------------------------------------------------------------

    async def _handshake(self, row: SubscriptionRow, spec: Spec) -> None:
        await self._send(row, spec, "POST", spec.endpoint, None, "handshake")
        await self._set_status(row, "active", None)
        log.info("subscription %s active", row.id)

    async def _deliver(self, row: SubscriptionRow, spec: Spec, batch: list[DeliveryRow],
                       principal: dict[str, Any]) -> None:
        if spec.payload is None:  # "something matched": one POST says it for the batch
            await self._send(row, spec, "POST", spec.endpoint, None, "event-notification")
            await self._done(row, spec, batch)
            return
        restrict = restriction_of_record(principal)
        done: list[DeliveryRow] = []
        try:
            for item in batch:
                try:
                    resource = await asyncio.to_thread(
                        self.store.vread, item.res_type, item.res_id, item.version_id,
                        restrict=restrict)
                except Gone:
                    resource = None
                if resource is not None:
                    url = f"{spec.endpoint.rstrip('/')}/{item.res_type}/{item.res_id}"
                    await self._send(row, spec, "PUT", url, orjson.dumps(resource),
                                     "event-notification")
                done.append(item)
        finally:
            if done:
                await self._done(row, spec, done)

    async def _done(self, row: SubscriptionRow, spec: Spec, items: list[DeliveryRow]) -> None:
        await asyncio.to_thread(delivered, self.store, [i.seq for i in items])
        self.delivered += len(items)
        refs = list(dict.fromkeys(f"{i.res_type}/{i.res_id}" for i in items))
        self._audit(row, ok=True, refs=refs[:AUDIT_REFS], description=(
            f"{len(items)} notification(s) of Subscription/{row.id} delivered "
            f"({'full resource' if spec.payload else 'no payload'})"))

    async def _send(self, row: SubscriptionRow, spec: Spec, method: str, url: str,
                    body: bytes | None, event: str) -> None:
        assert self._http is not None
        headers = {**dict(spec.headers), "X-Subscription-Id": row.id,
                   "X-Subscription-Event": event}
        if body is not None:
            headers["Content-Type"] = FHIR_MEDIA_TYPE
        try:
            answer = await self._http.request(method, url, content=body or b"",
                                              headers=headers)
        except httpx.TimeoutException as exc:
            raise Failed(f"{event}: no answer from the endpoint within "
                         f"{self.options.timeout:g} s") from exc
        except httpx.HTTPError as exc:
            raise Failed(f"{event}: the endpoint could not be reached "
                         f"({type(exc).__name__})") from exc
        if not 200 <= answer.status_code < 300:
            raise Failed(f"{event}: the endpoint answered HTTP {answer.status_code}")
        self._last_sent[row.id] = time.monotonic()

    def _audit(self, row: SubscriptionRow, *, ok: bool, description: str,
               refs: list[str]) -> None:
        if self.audit is not None:
            self.audit(Facts(SIGNAL, "subscription-notification", "", 200 if ok else 500,
                             row.client_id, when=time.time(),
                             details={"description": description,
                                      "entity": [f"Subscription/{row.id}", *refs]}))
