"""Fan-out: the store's queued changes → each matching subscription's pending notifications.

A change matches a subscription when its resource, as it is now, is found by the
subscription's criteria under its owner's data restriction: one search per subscription and
type for a whole batch (``criteria`` AND ``_id=id1,id2,…``; subscriptions with the same
criteria and the same restriction share it), through the store's own search
with ``restrict=`` (the FHIR API's rule), so a restricted owner is never notified of what it
could not read. Deletes are not notified (nothing left to match or to read).

Versions of one resource keep their order: the queue holds them in commit order (a version
is written under its resource's row lock, after the previous one committed), and several
versions of one resource in one batch are put in version order.
"""

from __future__ import annotations

import logging
import time
from collections import defaultdict
from collections.abc import Sequence
from typing import Any

import orjson

from gateway.errors import GatewayError
from gateway.store.exports import restriction_of_record
from gateway.store.sql import SqlStore
from gateway.store.subscriptions import (
    ChangeRow,
    SubscriptionRow,
    list_subscriptions,
    queue,
    take_changes,
)
from gateway.subscriptions.owners import Owners, effective_principal
from gateway.subscriptions.resource import SubscriptionError, parse_criteria

log = logging.getLogger(__name__)
WATCHING = ("requested", "active", "error")  # error: notifications wait for a resume
ID_CHUNK = 100


def fan_out(store: SqlStore, limit: int = 500, owners: Owners | None = None) -> set[str]:
    """Turn up to ``limit`` queued changes into notifications; the ids of the subscriptions
    that got some. ``owners``: the owners' current registrations (``gateway.subscriptions.
    owners``); without, the principal each subscription recorded."""
    changes = take_changes(store, limit)
    if not changes:
        return set()
    watchers: dict[str, list[SubscriptionRow]] = defaultdict(list)
    for sub in list_subscriptions(store, statuses=WATCHING):
        watchers[sub.res_type].append(sub)
    live = [c for c in _in_version_order(changes) if not c.deleted and c.res_type in watchers]
    found: dict[str, set[str]] = {}
    for rtype in {c.res_type for c in live}:
        ids = sorted({c.res_id for c in live if c.res_type == rtype})
        searched: dict[tuple[str, str], set[str]] = {}  # one search per criteria and owner
        for sub in watchers[rtype]:
            principal = effective_principal(sub, owners)
            if principal is None:
                found[sub.id] = set()
                continue
            key = (str(sub.content.get("criteria")), orjson.dumps(
                [principal.get(k) for k in ("anonymous", "studies", "sites")]).decode())
            if key not in searched:
                searched[key] = matching_ids(store, sub, principal, rtype, ids)
            found[sub.id] = searched[key]
    deliveries = [(sub.id, c.res_type, c.res_id, c.version_id)
                  for c in live for sub in watchers[c.res_type] if c.res_id in found[sub.id]]
    queue(store, changes, deliveries, int(time.time() * 1000))
    return {d[0] for d in deliveries}


def matching_ids(store: SqlStore, sub: SubscriptionRow, principal: dict[str, Any],
                 rtype: str, ids: Sequence[str]) -> set[str]:
    """Which of ``ids`` the subscription's criteria find, as ``principal`` may see them."""
    try:
        _, criteria = parse_criteria(sub.content.get("criteria"))
    except SubscriptionError:
        return set()
    restrict = restriction_of_record(principal)
    out: set[str] = set()
    for start in range(0, len(ids), ID_CHUNK):
        chunk = ids[start:start + ID_CHUNK]
        params = [*criteria, ("_id", ",".join(chunk)), ("_count", str(len(chunk)))]
        try:
            result = store.search(rtype, params, strict=True, restrict=restrict)
        except GatewayError as exc:
            if exc.retriable:
                raise  # the database: the changes stay queued, fan-out retries
            log.warning("subscription %s: its criteria no longer search (%s)", sub.id,
                        type(exc).__name__)
            return set()
        out.update(str(r["id"]) for r in result.resources)
    return out


def _in_version_order(changes: Sequence[ChangeRow]) -> list[ChangeRow]:
    """``changes`` in queue order, the versions of each resource ascending within it."""
    versions: dict[tuple[str, str], list[ChangeRow]] = defaultdict(list)
    for change in changes:
        versions[(change.res_type, change.res_id)].append(change)
    for group in versions.values():
        group.sort(key=lambda c: c.version_id, reverse=True)
    return [versions[(c.res_type, c.res_id)].pop() for c in changes]
