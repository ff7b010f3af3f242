"""Whose rights a subscription's notifications follow: its owner's as they are now.

A subscription records its creator's restriction (studies, sites), as an export job does;
but a subscription lives for months, and a client's registration changes (``gateway
reload`` re-reads the clients file). With authentication on, every fan-out and delivery
uses the owner's current registration (``registered_owners``): narrowed studies narrow the
notifications at once, and a client removed from the clients file, or no longer allowed to
search the subscription's type, gets nothing more: its subscription is turned ``off``.
Without authentication (loopback demo) the recorded principal is used.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from gateway.security.principal import Principal
from gateway.store.subscriptions import SubscriptionRow

# client id → its current registration as a recorded principal; None: not registered
Owners = Callable[[str], dict[str, Any] | None]


def registered_owners(auth: Any) -> Owners | None:
    """The owners' current registrations from ``gateway.security.install.Auth`` (None
    when the gateway has no clients file)."""
    tokens = getattr(auth, "tokens", None)
    if tokens is None:
        return None

    def owner(client_id: str) -> dict[str, Any] | None:
        client = tokens.clients.get(client_id)
        if client is None:
            return None
        return {"client_id": client.id, "anonymous": False, "scopes": sorted(client.scopes),
                "studies": None if client.studies is None else sorted(client.studies),
                "sites": None if client.sites is None else sorted(client.sites)}

    return owner


def effective_principal(sub: SubscriptionRow, owners: Owners | None) -> dict[str, Any] | None:
    """The principal a subscription's notifications follow now; None: none may go out."""
    if owners is None:
        return sub.principal
    current = owners(sub.client_id)
    if current is None:
        return None
    if not Principal(sub.client_id, frozenset(current["scopes"])).may(sub.res_type, "s"):
        return None
    return current
