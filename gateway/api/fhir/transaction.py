"""Batch and transaction Bundles (``POST /fhir``).

A transaction runs in one store transaction, all or nothing, in the R4 order (DELETE,
POST, PUT/PATCH, then GET once the writes are committed). Before any write, every
``urn:uuid:`` fullUrl of a POST/PUT entry gets its server id and every reference in the
Bundle that names it, or names a conditional reference (``Patient?identifier=…``), is
rewritten; references of written resources must then resolve (422 otherwise).
A batch runs each entry in its own transaction; a failing entry gets its own outcome.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from functools import partial
from typing import Any
from urllib.parse import urlsplit

from gateway.errors import GatewayError
from gateway.security.access import Restriction
from gateway.store import Resource, Store, Transaction

from . import interactions as ix
from .bundles import response_entry, status_line
from .outcomes import FhirError, from_gateway_error, issue, outcome

ORDER = {"DELETE": 0, "POST": 1, "PUT": 2, "PATCH": 2, "GET": 3, "HEAD": 3}
Getter = Callable[[str, str], dict[str, Any]]  # (url path, query) -> response entry


@dataclass(slots=True)
class Entry:
    index: int
    method: str
    url: str  # relative: "Patient/1", "Patient?identifier=…"
    resource: Resource | None
    full_url: str | None
    if_none_exist: str | None = None
    if_match: str | None = None
    target: str | None = None  # "Type/id" decided before the writes
    existing: bool = False  # a conditional create that matched

    @property
    def rtype(self) -> str:
        return self.url.split("?", 1)[0].split("/", 1)[0]

    @property
    def query(self) -> str:
        return self.url.partition("?")[2]


@dataclass(slots=True)
class Plan:
    entries: list[Entry]
    urns: dict[str, str] = field(default_factory=dict)  # fullUrl → "Type/id"


def parse_entries(bundle: dict[str, Any], base: str) -> list[Entry]:
    out = []
    for i, raw in enumerate(bundle.get("entry") or []):
        request = raw.get("request") or {}
        method = str(request.get("method", "")).upper()
        if method not in ORDER or not request.get("url"):
            raise FhirError.of("invalid", f"entry {i}: request.method and request.url are "
                               "required", expression=[f"Bundle.entry[{i}].request"])
        out.append(Entry(i, method, _relative(str(request["url"]), base), raw.get("resource"),
                         raw.get("fullUrl"), request.get("ifNoneExist"),
                         request.get("ifMatch")))
    return out


def _relative(url: str, base: str) -> str:
    if url.startswith(base + "/"):
        return url[len(base) + 1:]
    parts = urlsplit(url)
    if parts.scheme:
        return parts.path.split("/fhir/", 1)[-1] + (f"?{parts.query}" if parts.query else "")
    return url.lstrip("/")


def check_entries(bundle: dict[str, Any], base: str,
                  refusal: Callable[[str, list[str]], str | None]) -> None:
    """Each entry needs its own permission: ``refusal(method, path parts)`` says why an
    entry may not run (the trust boundary's rule); one refused entry refuses the Bundle
    (403) before anything runs."""
    for entry in parse_entries(bundle, base):
        parts = entry.url.split("?", 1)[0].strip("/").split("/")
        reason = refusal(entry.method, parts)
        if reason is not None:
            raise FhirError.of("forbidden", f"entry {entry.index}: {reason}",
                               expression=[f"Bundle.entry[{entry.index}].request"])


# -- transaction ---------------------------------------------------------------------------

def run_transaction(store: Store, bundle: dict[str, Any], ctx: ix.WriteContext, base: str,
                    get: Getter) -> dict[str, Any]:
    entries = parse_entries(bundle, base)
    responses: dict[int, dict[str, Any]] = {}
    with store.transaction() as tx:
        plan = _plan(tx, entries, ctx.restrict)
        rewrite_references(bundle_resources(entries),
                           lambda ref: _resolve(tx, plan, ref, ctx.restrict))
        for entry in sorted(entries, key=lambda e: ORDER[e.method]):
            if entry.method not in ("GET", "HEAD"):
                responses[entry.index] = _in_entry(entry, partial(_write, tx, entry, ctx),
                                                   base)
        _check_references(tx, entries, ctx.restrict)
    for entry in entries:  # reads after the commit: a failing read fails alone
        if entry.method in ("GET", "HEAD"):
            responses[entry.index] = _guarded(partial(_get, get, entry))
    return _response_bundle("transaction-response", [responses[e.index] for e in entries])


def _get(get: Getter, entry: Entry) -> dict[str, Any]:
    path, _, query = entry.url.partition("?")
    return get(path, query)


def _in_entry(entry: Entry, action: Callable[[], ix.Result], base: str) -> dict[str, Any]:
    """Run one entry; an error names the entry it came from (and aborts the transaction)."""
    try:
        return response_entry(action(), base)
    except FhirError as exc:
        raise _tagged(exc, entry.index) from exc
    except GatewayError as exc:
        raise _tagged(from_gateway_error(exc), entry.index) from exc


def _tagged(exc: FhirError, index: int) -> FhirError:
    for item in exc.outcome.get("issue", []):
        item["diagnostics"] = f"entry {index}: {item.get('diagnostics', '')}"
    return FhirError(exc.status, exc.outcome, exc.headers)


def _plan(tx: Transaction, entries: list[Entry], restrict: Restriction | None) -> Plan:
    """Decide the id of every POST and conditional PUT before anything is written
    (conditions match only what a restricted writer may see)."""
    plan = Plan(entries)
    for entry in entries:
        if entry.method == "POST" and entry.resource is not None:
            _plan_create(tx, entry, restrict)
        elif entry.method == "PUT" and entry.resource is not None:
            _plan_update(tx, entry, restrict)
        if entry.target and entry.full_url:
            plan.urns[entry.full_url] = entry.target
    return plan


def _plan_create(tx: Transaction, entry: Entry, restrict: Restriction | None) -> None:
    if entry.if_none_exist:
        pairs = ix.criteria(entry.if_none_exist)
        ix.lock(tx, entry.rtype, pairs)
        found = _unique(tx, entry.rtype, pairs, entry.index, required=False,
                        restrict=restrict)
        if found is not None:
            entry.target, entry.existing = f"{entry.rtype}/{found}", True
            return
    entry.target = f"{entry.rtype}/{ix.new_id()}"


def _plan_update(tx: Transaction, entry: Entry, restrict: Restriction | None) -> None:
    if "?" not in entry.url:
        entry.target = entry.url.split("/_history", 1)[0]
        return
    pairs = ix.criteria(entry.query)
    ix.lock(tx, entry.rtype, pairs)
    found = _unique(tx, entry.rtype, pairs, entry.index, required=False, restrict=restrict)
    new = (entry.resource or {}).get("id") or ix.new_id()
    entry.target = f"{entry.rtype}/{found or new}"


def _unique(tx: Transaction, rtype: str, pairs: list[tuple[str, str]], index: int, *,
            required: bool, restrict: Restriction | None = None) -> str | None:
    found = ix.match(tx, rtype, pairs, restrict)
    if len(found) > 1:
        raise FhirError.of("multiple-matches", f"entry {index}: more than one {rtype} "
                           "matches the conditional criteria")
    if not found and required:
        raise FhirError.of("processing", f"entry {index}: no {rtype} matches the "
                           "conditional reference")
    return str(found[0]["id"]) if found else None


def _resolve(tx: Transaction, plan: Plan, ref: str, restrict: Restriction | None) -> str:
    if ref in plan.urns:
        return plan.urns[ref]
    if ref.startswith("urn:uuid:") or ref.startswith("urn:oid:"):
        raise FhirError.of("processing", f"reference {ref} names no entry of the Bundle")
    if "?" in ref and not ref.startswith("#"):
        rtype, _, query = ref.partition("?")
        found = _unique(tx, rtype, ix.criteria(query), -1, required=True, restrict=restrict)
        return f"{rtype}/{found}"
    return ref


def _write(tx: Transaction, entry: Entry, ctx: ix.WriteContext) -> ix.Result:
    rtype, target = entry.rtype, entry.target
    if entry.method == "DELETE":
        if "?" in entry.url:
            return ix.conditional_delete(tx, rtype, entry.query, ctx)
        return ix.delete(tx, rtype, entry.url.split("/")[1], ctx)
    if entry.resource is None or target is None:
        raise FhirError.of("invalid", f"{entry.method} needs a resource")
    rid = target.split("/", 1)[1]
    if entry.method == "POST":
        if entry.existing:
            return ix.Result(200, tx.get(rtype, rid), f"{target} already exists (ifNoneExist)",
                             f"{target}")
        return ix.create(tx, entry.resource, ctx, id=rid)
    resource = {**entry.resource, "id": rid} if "?" in entry.url else entry.resource
    return ix.update(tx, rtype, rid, resource, ctx,
                     if_match=ix.parse_if_match(entry.if_match))


# -- references ------------------------------------------------------------------------------

def bundle_resources(entries: list[Entry]) -> Iterator[Resource]:
    return (e.resource for e in entries if e.resource is not None)


def rewrite_references(resources: Iterator[Resource], resolve: Callable[[str], str]) -> None:
    for resource in resources:
        _rewrite(resource, resolve)


def _rewrite(node: Any, resolve: Callable[[str], str]) -> None:
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "reference" and isinstance(value, str):
                node[key] = resolve(value)
            else:
                _rewrite(value, resolve)
    elif isinstance(node, list):
        for item in node:
            _rewrite(item, resolve)


def references(node: Any, path: str) -> Iterator[tuple[str, str]]:
    """(FHIRPath, reference) of every relative ``Type/id`` reference under ``node``."""
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "reference" and isinstance(value, str):
                yield f"{path}.reference", value
            else:
                yield from references(value, f"{path}.{key}")
    elif isinstance(node, list):
        for i, item in enumerate(node):
            yield from references(item, f"{path}[{i}]")


def _check_references(tx: Transaction, entries: list[Entry],
                      restrict: Restriction | None) -> None:
    """Local references of written resources resolve (for a restricted writer: to a
    resource it may see, so that a 422 tells nothing about the others)."""
    problems = []
    for entry in entries:
        if entry.method not in ("POST", "PUT") or entry.resource is None:
            continue
        for path, ref in references(entry.resource, entry.rtype):
            if _is_local(ref) and not _resolves(tx, ref, restrict):
                problems.append(issue("processing", f"entry {entry.index}: reference {ref} "
                                      "does not resolve", expression=[path]))
    if problems:
        raise FhirError(422, outcome(*problems))


def _resolves(tx: Transaction, ref: str, restrict: Restriction | None) -> bool:
    rtype, id = ref.split("/")[:2]
    if restrict is not None:
        return tx.visible(restrict, rtype, id)
    return tx.get(rtype, id) is not None


def _is_local(ref: str) -> bool:
    parts = ref.split("/")
    return len(parts) in (2, 4) and parts[0][:1].isupper() and not ref.startswith("#")


# -- batch ---------------------------------------------------------------------------------

def run_batch(store: Store, bundle: dict[str, Any], ctx: ix.WriteContext, base: str,
              get: Getter) -> dict[str, Any]:
    entries = parse_entries(bundle, base)
    return _response_bundle("batch-response",
                            [_batch_entry(store, e, ctx, base, get) for e in entries])


def _batch_entry(store: Store, entry: Entry, ctx: ix.WriteContext, base: str,
                 get: Getter) -> dict[str, Any]:
    if entry.method in ("GET", "HEAD"):
        return _guarded(partial(_get, get, entry))
    return _guarded(lambda: _batch_write(store, entry, ctx, base))


def _batch_write(store: Store, entry: Entry, ctx: ix.WriteContext, base: str
                 ) -> dict[str, Any]:
    with store.transaction() as tx:
        _plan(tx, [entry], ctx.restrict)
        return response_entry(_write(tx, entry, ctx), base)


def _guarded(action: Callable[[], dict[str, Any]]) -> dict[str, Any]:
    """One independent entry: its error becomes its own response with an outcome."""
    try:
        return action()
    except FhirError as exc:
        return _error_entry(exc.status, exc.outcome)
    except GatewayError as exc:
        err = from_gateway_error(exc)
        return _error_entry(err.status, err.outcome)


def _error_entry(status: int, body: dict[str, Any]) -> dict[str, Any]:
    return {"response": {"status": status_line(status), "outcome": body}}


def _response_bundle(kind: str, entries: list[dict[str, Any]]) -> dict[str, Any]:
    return {"resourceType": "Bundle", "id": ix.new_id(), "type": kind, "entry": entries}
