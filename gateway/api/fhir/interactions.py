"""The write and read interactions, free of HTTP: used by the routes and by batch and
transaction Bundles alike. Each write runs inside a store ``Transaction`` it is given.

Conditional creates and updates are serialised per (type, criteria) with
``tx.lock_key``: N parallel identical requests find the first one's resource instead of
creating N twins.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from urllib.parse import parse_qsl, urlencode

from gateway.security.access import Restriction
from gateway.store import COHORT_SOURCE, Change, Resource, Store, Transaction

from .outcomes import FhirError
from .validation import validate_resource


@dataclass(frozen=True, slots=True)
class WriteContext:
    """What every write through the API passes to the store (for the outbox headers), and
    the writer's data restriction: a restricted client neither changes nor creates what
    it could not read (``check_writable``, ``check_written``)."""

    source: str | None = None
    headers: dict[str, str] = field(default_factory=dict)
    restrict: Restriction | None = None


@dataclass(slots=True)
class Result:
    """The outcome of one interaction, before it becomes an HTTP answer."""

    status: int
    resource: Resource | None
    message: str
    location: str | None = None  # "Type/id/_history/n"

    @property
    def version(self) -> str | None:
        if self.resource is None:
            return None
        return str((self.resource.get("meta") or {}).get("versionId", "")) or None


def new_id() -> str:
    return str(uuid.uuid4())


def criteria(query: str) -> list[tuple[str, str]]:
    """``identifier=a|b&status=final`` → sorted pairs (the canonical conditional key)."""
    pairs = parse_qsl(query.lstrip("?"), keep_blank_values=True)
    if not pairs:
        raise FhirError.of("invalid", "conditional criteria are empty")
    return sorted(pairs)


def match(tx: Transaction, rtype: str, pairs: list[tuple[str, str]],
          restrict: Restriction | None = None) -> list[Resource]:
    """Current resources of ``rtype`` matching ``pairs`` (seen from inside ``tx``; by a
    restricted writer, only those it may see)."""
    options = {"restrict": restrict} if restrict is not None else {}
    return list(tx.search(rtype, [*pairs, ("_count", "2")], strict=True, **options).resources)


def lock(tx: Transaction, rtype: str, pairs: list[tuple[str, str]]) -> None:
    tx.lock_key(f"{rtype}?{urlencode(pairs)}")


def _location(change: Change) -> str:
    return f"{change.resource_type}/{change.id}/_history/{change.version_id}"


def _put(tx: Transaction, resource: Resource, ctx: WriteContext,
         if_match: int | None = None) -> Change:
    validate_resource(resource)
    check_not_derived(tx, resource["resourceType"], resource["id"], resource)
    source = (resource.get("meta") or {}).get("source") or ctx.source  # the client's first
    change = tx.put(resource, source=source, if_match=if_match, headers=dict(ctx.headers))
    check_written(tx, ctx, change.resource_type, change.id)
    return change


def check_writable(tx: Transaction, ctx: WriteContext, rtype: str, id: str) -> None:
    """A restricted writer updates only a resource it can read, and creates with POST
    (server-assigned ids): an update of any other id, existing or not, answers the same
    403, so that a PUT cannot tell whether a hidden resource exists."""
    if ctx.restrict is not None and not tx.visible(ctx.restrict, rtype, id):
        raise FhirError.of("forbidden", f"{rtype}/{id}: this client may update only "
                           "resources of its studies and sites that exist; it creates "
                           "with POST", status=403)


def check_not_derived(tx: Transaction, rtype: str, id: str,
                      resource: Resource | None = None) -> None:
    """A study cohort Group is derived by the hub from the ResearchSubjects: a client's
    update or delete would be overwritten at the next enrolment change (or would claim the
    hub's ``meta.source``), so it is refused; the cohort changes through its subjects."""
    if rtype != "Group":
        return
    claimed = ((resource or {}).get("meta") or {}).get("source") == COHORT_SOURCE
    current = tx.get(rtype, id)
    if claimed or (current is not None
                   and (current.get("meta") or {}).get("source") == COHORT_SOURCE):
        raise FhirError.of("business-rule", f"Group/{id} is a study cohort kept by the hub "
                           "from the study's ResearchSubjects: change those instead",
                           status=422)


def check_written(tx: Transaction, ctx: WriteContext, rtype: str, id: str) -> None:
    """After the write, inside its transaction: a restricted writer must still see what it
    wrote; otherwise the transaction rolls back (403)."""
    if ctx.restrict is not None and not tx.visible(ctx.restrict, rtype, id):
        raise FhirError.of("forbidden", f"{rtype}/{id} would be outside the studies and "
                           "sites this client may access", status=403)


def create(tx: Transaction, resource: Resource, ctx: WriteContext, *,
           if_none_exist: str | None = None, id: str | None = None) -> Result:
    rtype = resource["resourceType"]
    if if_none_exist:
        pairs = criteria(if_none_exist)
        lock(tx, rtype, pairs)
        found = _existing(tx, rtype, pairs, "create", ctx.restrict)
        if found is not None:
            return Result(200, found, f"{rtype}/{found['id']} already exists (If-None-Exist)",
                          _history_location(found))
    change = _put(tx, {**resource, "id": id or new_id()}, ctx)
    return Result(201, change.resource, f"created {rtype}/{change.id}", _location(change))


def _existing(tx: Transaction, rtype: str, pairs: list[tuple[str, str]], what: str,
              restrict: Restriction | None) -> Resource | None:
    found = match(tx, rtype, pairs, restrict)
    if len(found) > 1:
        raise FhirError.of("multiple-matches", f"conditional {what}: more than one {rtype} "
                           "matches the criteria")
    return found[0] if found else None


def _history_location(resource: Resource) -> str:
    version = (resource.get("meta") or {}).get("versionId", "1")
    return f"{resource['resourceType']}/{resource['id']}/_history/{version}"


def update(tx: Transaction, rtype: str, id: str, resource: Resource, ctx: WriteContext, *,
           if_match: int | None = None) -> Result:
    check_identity(resource, rtype, id)
    check_writable(tx, ctx, rtype, id)
    change = _put(tx, resource, ctx, if_match)
    if change.created:
        return Result(201, change.resource, f"created {rtype}/{id}", _location(change))
    verb = "updated" if change.changed else "unchanged"
    return Result(200, change.resource, f"{verb} {rtype}/{id}", _location(change))


def check_identity(resource: Resource, rtype: str, id: str | None) -> None:
    if resource.get("resourceType") != rtype:
        raise FhirError.of("invalid", f"resourceType {resource.get('resourceType')!r} does "
                           f"not match the URL ({rtype})", expression=["resourceType"])
    if id is not None and resource.get("id") != id:
        raise FhirError.of("invalid", f"the resource id must equal the id in the URL ({id})",
                           expression=[f"{rtype}.id"])


def conditional_update(tx: Transaction, rtype: str, query: str, resource: Resource,
                       ctx: WriteContext, *, if_match: int | None = None) -> Result:
    pairs = criteria(query)
    lock(tx, rtype, pairs)
    found = _existing(tx, rtype, pairs, "update", ctx.restrict)
    if found is None:
        check_identity(resource, rtype, None)
        if resource.get("id"):  # an update-as-create with the client's id
            check_writable(tx, ctx, rtype, resource["id"])
        return create(tx, resource, ctx, id=resource.get("id"))
    if resource.get("id") not in (None, found["id"]):
        raise FhirError.of("invalid", f"the resource id differs from the matching "
                           f"{rtype}/{found['id']}", expression=[f"{rtype}.id"])
    return update(tx, rtype, found["id"], {**resource, "id": found["id"]}, ctx,
                  if_match=if_match)


def delete(tx: Transaction, rtype: str, id: str, ctx: WriteContext) -> Result:
    if ctx.restrict is not None and not tx.visible(ctx.restrict, rtype, id):
        # hidden, deleted or missing alike: nothing tells a restricted client which
        raise FhirError.of("not-found", f"{rtype}/{id} is not known")
    check_not_derived(tx, rtype, id)
    change = tx.delete(rtype, id, source=ctx.source, headers=dict(ctx.headers))
    verb = "deleted" if change.changed else "nothing to delete at"
    return Result(200, None, f"{verb} {rtype}/{id}")


def conditional_delete(tx: Transaction, rtype: str, query: str, ctx: WriteContext) -> Result:
    pairs = criteria(query)
    lock(tx, rtype, pairs)
    found = _existing(tx, rtype, pairs, "delete", ctx.restrict)
    if found is None:
        return Result(200, None, f"no {rtype} matches the criteria: nothing deleted")
    return delete(tx, rtype, found["id"], ctx)


def read(store: Store, rtype: str, id: str, version: str | None = None,
         restrict: Restriction | None = None) -> Resource:
    """Current or given version; 404 / 410 as FhirError (via the store's errors). What
    ``restrict`` hides answers 404, as if absent (deleted included: no 410)."""
    options = {"restrict": restrict} if restrict is not None else {}
    if version is None:
        found = store.read(rtype, id, **options)
    else:
        if not version.isdigit():
            raise FhirError.of("not-found", f"{rtype}/{id} has no version {version!r}")
        found = store.vread(rtype, id, int(version), **options)
    if found is None:
        what = f"{rtype}/{id}" + (f"/_history/{version}" if version else "")
        raise FhirError.of("not-found", f"{what} is not known")
    return found


def parse_if_match(value: str | None) -> int | None:
    if value is None:
        return None
    tag = value.strip().removeprefix("W/").strip('"')
    if not tag.isdigit():
        raise FhirError.of("invalid", "If-Match must be a version ETag like W/\"3\"",
                           status=412)
    return int(tag)
