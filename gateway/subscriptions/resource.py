"""An R4 ``Subscription`` as a client sends it → what the gateway delivers (``Spec``). Pure.

What the gateway accepts (docs/research-data.md, "Subscriptions"):

- ``criteria``: ``Type?param=value&…``, a search on one resource type the store serves,
  checked by the store's own search planner; no result parameters (``_sort``, ``_count``…)
- ``channel.type``: ``rest-hook`` only
- ``channel.endpoint``: an absolute ``http``/``https`` URL, its host in the allow-list when
  one is configured
- ``channel.payload``: absent (a POST with no body: "something matched, search again") or
  ``application/fhir+json`` (the version that matched, PUT to ``endpoint/Type/id``)
- ``channel.header``: ``Name: value`` lines, sent with every notification
- heartbeat: ``channel.extension`` ``backport-heartbeat-period`` (``valueUnsignedInt``, s)
- ``status``: ``requested`` (``active`` is read as ``requested``: the gateway activates) or
  ``off``; ``error`` is the gateway's
- ``end``: after it, the subscription is set ``off``
- ``reason``: free text, scrubbed (``gateway.mapping.scrub``) before it is stored
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from gateway.mapping.scrub import Scrubber

HEARTBEAT = ("http://hl7.org/fhir/uv/subscriptions-backport/StructureDefinition/"
             "backport-heartbeat-period")
FHIR_JSON = "application/fhir+json"
CLIENT_STATUSES = frozenset({"requested", "active", "off"})
# search result parameters: they shape a result page, and a notification has none
RESULT_PARAMS = frozenset({"_include", "_revinclude", "_sort", "_count", "_elements",
                           "_summary", "_total", "_cursor", "_contained", "_containedType",
                           "_format", "_pretty", "_include:iterate", "_revinclude:iterate"})
UNWATCHABLE = frozenset({"Subscription", "AuditEvent", "SearchParameter"})
MAX_HEADERS = 20
MAX_HEADER = 4096
MAX_ERROR = 500  # characters of Subscription.error
_HEADER_NAME = re.compile(r"^[!#$%&'*+\-.^_`|~0-9A-Za-z]{1,128}$")
_TYPE = re.compile(r"^[A-Z][A-Za-z]{1,63}$")
# headers the gateway sets itself: a subscription may not replace them
RESERVED_HEADERS = frozenset({"host", "content-length", "content-type", "transfer-encoding",
                              "connection"})


class SubscriptionError(ValueError):
    """Bad input: ``element`` names the Subscription element (FHIRPath) at fault."""

    def __init__(self, element: str, message: str) -> None:
        super().__init__(message)
        self.element = element


@dataclass(frozen=True, slots=True)
class Spec:
    """What one Subscription asks the gateway to do."""

    resource_type: str
    criteria: tuple[tuple[str, str], ...]
    endpoint: str
    headers: tuple[tuple[str, str], ...]
    payload: str | None  # None: no body; FHIR_JSON: the resource
    heartbeat: int | None  # seconds
    status: str  # requested | off (as the client asked)
    end: str | None


def parse(body: dict[str, Any], *, allowed_hosts: frozenset[str] | None = None) -> Spec:
    """The ``Spec`` of a Subscription (structurally valid already); SubscriptionError
    naming the element otherwise."""
    resource_type, criteria = parse_criteria(body.get("criteria"))
    channel = body.get("channel") or {}
    if channel.get("type") != "rest-hook":
        raise SubscriptionError("Subscription.channel.type", f"channel type "
                                f"{channel.get('type')!r} is not supported: rest-hook only")
    payload = channel.get("payload")
    if payload is not None and payload.split(";")[0].strip() != FHIR_JSON:
        raise SubscriptionError("Subscription.channel.payload", f"payload {payload!r} is not "
                                f"supported: none or {FHIR_JSON}")
    status = body.get("status")
    if status not in CLIENT_STATUSES:
        raise SubscriptionError("Subscription.status", f"status {status!r} cannot be set by "
                                "a client: requested, active or off")
    return Spec(resource_type, criteria, check_endpoint(channel.get("endpoint"), allowed_hosts),
                parse_headers(channel.get("header") or []),
                FHIR_JSON if payload is not None else None, _heartbeat(channel),
                "off" if status == "off" else "requested", body.get("end"))


def parse_criteria(criteria: Any) -> tuple[str, tuple[tuple[str, str], ...]]:
    if not isinstance(criteria, str) or not criteria.strip():
        raise SubscriptionError("Subscription.criteria", "criteria is required: a search "
                                "such as Observation?code=http://loinc.org|26464-8")
    rtype, _, query = criteria.strip().partition("?")
    if not _TYPE.match(rtype) or rtype in UNWATCHABLE:
        raise SubscriptionError("Subscription.criteria", f"criteria must start with a "
                                f"resource type this server serves, not {rtype!r}")
    params = tuple(parse_qsl(query, keep_blank_values=True))
    refused = sorted({name for name, _ in params if name in RESULT_PARAMS})
    if refused:
        raise SubscriptionError("Subscription.criteria", f"criteria cannot hold result "
                                f"parameters ({', '.join(refused)})")
    return rtype, params


def check_endpoint(endpoint: Any, allowed_hosts: frozenset[str] | None) -> str:
    if not isinstance(endpoint, str) or not endpoint:
        raise SubscriptionError("Subscription.channel.endpoint", "a rest-hook needs "
                                "channel.endpoint")
    parts = urlsplit(endpoint)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise SubscriptionError("Subscription.channel.endpoint", "channel.endpoint must be "
                                "an absolute http or https URL")
    if parts.username or parts.password:
        raise SubscriptionError("Subscription.channel.endpoint", "channel.endpoint must not "
                                "carry credentials: send them in channel.header")
    if allowed_hosts is not None and parts.hostname.lower() not in allowed_hosts:
        raise SubscriptionError("Subscription.channel.endpoint", f"host {parts.hostname!r} "
                                "is not among this gateway's subscription endpoint hosts")
    return endpoint


def parse_headers(lines: list[Any]) -> tuple[tuple[str, str], ...]:
    if len(lines) > MAX_HEADERS:
        raise SubscriptionError("Subscription.channel.header",
                                f"at most {MAX_HEADERS} headers")
    out = []
    for i, line in enumerate(lines):
        name, sep, value = str(line).partition(":")
        name, value = name.strip(), value.strip()
        where = f"Subscription.channel.header[{i}]"
        if not sep or not _HEADER_NAME.match(name) or len(line) > MAX_HEADER \
                or any(c in value for c in "\r\n\0"):
            raise SubscriptionError(where, "a header is one line 'Name: value'")
        if name.lower() in RESERVED_HEADERS:
            raise SubscriptionError(where, f"header {name} is set by the gateway")
        out.append((name, value))
    return tuple(out)


def _heartbeat(channel: dict[str, Any]) -> int | None:
    for extension in channel.get("extension") or []:
        if extension.get("url") == HEARTBEAT:
            value = extension.get("valueUnsignedInt")
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise SubscriptionError("Subscription.channel.extension", "the heartbeat "
                                        "period is a valueUnsignedInt of seconds ≥ 1")
            return value
    return None


def ended(spec_end: str | None, now: datetime | None = None) -> bool:
    """Whether ``Subscription.end`` has passed."""
    if not spec_end:
        return False
    try:
        end = datetime.fromisoformat(spec_end.replace("Z", "+00:00"))
    except ValueError:
        return False
    if end.tzinfo is None:
        end = end.replace(tzinfo=UTC)
    return end <= (now or datetime.now(UTC))


def scrub_reason(body: dict[str, Any]) -> dict[str, Any]:
    """The Subscription as stored: ``reason`` scrubbed, the gateway's own elements
    (``error``, ``meta``, ``id``) left to the gateway."""
    kept = {k: v for k, v in body.items() if k not in ("error", "meta", "id", "text")}
    if isinstance(kept.get("reason"), str):
        kept["reason"] = Scrubber().scrub(kept["reason"])
    return kept


def bounded_error(text: str) -> str:
    """``Subscription.error``: scrubbed (a receiver's message may echo anything) and short."""
    cleaned = Scrubber().scrub(" ".join(text.split()))
    return cleaned if len(cleaned) <= MAX_ERROR else cleaned[:MAX_ERROR - 1] + "…"
