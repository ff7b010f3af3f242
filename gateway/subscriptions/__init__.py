"""R4 Subscriptions on the hub (issue 12, item 4): rest-hook notifications of what the
store commits, at least once, in order per resource, surviving restarts.

* ``resource``: a Subscription → what to deliver (``Spec``); pure
* ``matching``: the store's change queue → each subscription's pending notifications
* ``owners``: whose rights notifications follow (the owner's current registration)
* ``service``: fan-out and one delivery task per live subscription (HTTP, retries, states)
* ``api``: ``/fhir/Subscription``
* storage: ``gateway.store.subscriptions`` and migration 0006 (the change-queue trigger)
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from gateway.store.sql import SqlStore

from .api import CAPABILITY_ENTRY, subscription_router
from .owners import registered_owners
from .service import DeliveryOptions, SubscriptionService


def options_from(settings: Any) -> DeliveryOptions:
    """``gateway serve``'s settings (``gateway.config.Settings``) → delivery options."""
    hosts = [h.strip().lower() for h in (settings.subscription_hosts or "").split(",")]
    return DeliveryOptions(max_failures=settings.subscription_max_failures,
                           max_backoff=settings.subscription_max_backoff,
                           allowed_hosts=frozenset(h for h in hosts if h) or None)


async def start_subscriptions(store: SqlStore, settings: Any, audit: Callable[..., None] | None,
                              auth: Any = None) -> SubscriptionService:
    """``auth``: the gateway's ``Auth``; notifications then follow the owners' current
    registrations (``owners``)."""
    return await SubscriptionService(store, options_from(settings), audit=audit,
                                     owners=registered_owners(auth)).start()


__all__ = ["CAPABILITY_ENTRY", "DeliveryOptions", "SubscriptionService", "options_from",
           "start_subscriptions", "subscription_router"]
