"""Resource content as stored: JSON bytes, the content hash, instants."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime
from typing import Any

import orjson

Resource = dict[str, Any]

VOLATILE_META = ("versionId", "lastUpdated")


def now_instant() -> str:
    """Now as a FHIR instant in UTC with millisecond precision: ``2026-11-27T10:02:55.123Z``."""
    return format_instant(datetime.now(UTC))


def format_instant(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def normalise_instant(value: str) -> str:
    """Any ISO 8601 instant with a zone → the stored UTC form (ms precision)."""
    moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return format_instant(moment)


def dumps(resource: Resource) -> bytes:
    return orjson.dumps(resource)


def loads(data: bytes | str) -> Resource:
    value: Resource = orjson.loads(data)
    return value


def content_hash(resource: Resource) -> str:
    """sha256 of the canonical JSON, ignoring ``meta.versionId`` and ``meta.lastUpdated``."""
    meta = resource.get("meta")
    if isinstance(meta, dict) and any(k in meta for k in VOLATILE_META):
        stable = {k: v for k, v in meta.items() if k not in VOLATILE_META}
        resource = {**resource, "meta": stable} if stable else _without(resource, "meta")
    elif meta == {}:
        resource = _without(resource, "meta")
    return hashlib.sha256(orjson.dumps(resource, option=orjson.OPT_SORT_KEYS)).hexdigest()


def stored_hash(resource: Resource, source: str | None = None) -> str:
    """``content_hash(with_meta(resource, …, source))`` without building the stored copy
    first (the write path asks this of every resource of every message)."""
    meta = resource.get("meta")
    stable = {k: v for k, v in meta.items() if k not in VOLATILE_META} if meta else {}
    if source is not None:
        stable["source"] = source
    body = {**resource, "meta": stable} if stable else _without(resource, "meta")
    return hashlib.sha256(orjson.dumps(body, option=orjson.OPT_SORT_KEYS)).hexdigest()


def _without(resource: Resource, key: str) -> Resource:
    return {k: v for k, v in resource.items() if k != key}


def with_meta(resource: Resource, version_id: int, last_updated: str,
              source: str | None = None) -> Resource:
    """A copy with ``meta.versionId``/``lastUpdated`` set (and ``meta.source`` if given);
    other meta elements (source, security, tag, profile) are kept as given."""
    meta = dict(resource.get("meta") or {})
    meta["versionId"] = str(version_id)
    meta["lastUpdated"] = last_updated
    if source is not None:
        meta["source"] = source
    out = {"resourceType": resource["resourceType"], "id": resource["id"], "meta": meta}
    out.update((k, v) for k, v in resource.items() if k not in out)
    return out
