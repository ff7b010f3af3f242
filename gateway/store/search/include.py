"""_include and _revinclude (with :iterate) over the reference index."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from sqlalchemy import Connection, false, select, tuple_

from gateway.security.access import Restriction
from gateway.store import schema as s
from gateway.store.base import Resource
from gateway.store.content import loads
from gateway.store.restrict import visible_any
from gateway.store.search.plan import Include, Plan

MAX_ROUNDS = 4  # :iterate depth
MAX_INCLUDED = 1000  # per page
Key = tuple[str, str]


def resolve_includes(conn: Connection, plan: Plan, matches: list[Resource]) -> list[Resource]:
    """Resources referenced by (or referencing) the page's matches, each once, never one
    of the matches themselves; ``:iterate`` includes also apply to what was included."""
    if not plan.includes or not matches:
        return []
    seen = {_key(r) for r in matches}
    included: list[Resource] = []
    frontier = matches
    for round_ in range(MAX_ROUNDS):
        specs = [i for i in plan.includes if round_ == 0 or i.iterate]
        keys: set[Key] = set()
        for spec in specs:
            keys |= _reverse(conn, spec, frontier) if spec.reverse else _forward(conn, spec,
                                                                                  frontier)
        fresh = _fetch(conn, sorted(keys - seen)[:MAX_INCLUDED - len(included)],
                       plan.restrict)
        seen |= keys
        included.extend(fresh)
        frontier = fresh
        if not fresh or not any(i.iterate for i in plan.includes):
            break
    return included


def _key(resource: Resource) -> Key:
    return resource["resourceType"], resource["id"]


def _forward(conn: Connection, spec: Include, frontier: list[Resource]) -> set[Key]:
    ids = [r["id"] for r in frontier if r["resourceType"] == spec.source]
    if not ids:
        return set()
    ref = s.idx_reference.c
    query = select(ref.target_type, ref.target_id).where(
        ref.res_type == spec.source, ref.res_id.in_(ids), ref.target_id.is_not(None),
        ref.target_type.is_not(None))
    if spec.param != "*":
        query = query.where(ref.param == spec.param)
    if spec.target:
        query = query.where(ref.target_type == spec.target)
    return {(row[0], row[1]) for row in conn.execute(query)}


def _reverse(conn: Connection, spec: Include, frontier: list[Resource]) -> set[Key]:
    ref = s.idx_reference.c
    out: set[Key] = set()
    for rtype, ids in _by_type(frontier).items():
        if spec.target and spec.target != rtype:
            continue
        query = select(ref.res_type, ref.res_id).where(
            ref.res_type == spec.source, ref.target_type == rtype, ref.target_id.in_(ids))
        if spec.param != "*":
            query = query.where(ref.param == spec.param)
        out |= {(row[0], row[1]) for row in conn.execute(query)}
    return out


def _by_type(resources: Iterable[Resource]) -> dict[str, list[str]]:
    groups: dict[str, list[str]] = {}
    for resource in resources:
        groups.setdefault(resource["resourceType"], []).append(resource["id"])
    return groups


def _fetch(conn: Connection, keys: list[Key], restrict: Restriction | None) -> list[Resource]:
    """The live resources of ``keys`` (those the restriction lets through)."""
    r = s.resource.c
    out: list[Any] = []
    for start in range(0, len(keys), 500):
        part = keys[start:start + 500]
        query = select(r.content).where(tuple_(r.res_type, r.res_id).in_(part),
                                        r.deleted == false())
        if restrict is not None:
            query = query.where(visible_any(restrict, r.res_type, r.res_id))
        out.extend(loads(row[0]) for row in conn.execute(query))
    return out
