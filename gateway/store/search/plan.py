"""Raw query parameters → a search plan: filters, sort, page size, includes, total.

Unknown or malformed parameters become OperationOutcome issues: in strict mode they raise
``SearchError``; in lenient mode they are left out (and left out of ``applied``, which the
API uses for the ``self`` link).

A search beyond the limits below is refused in both modes (``SearchError``, issue code
``too-costly``, HTTP 400), before any SQL is built: the database's own limits (expression
depth, nested subqueries) would otherwise answer, and much later.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from gateway.errors import SearchError
from gateway.security.access import Restriction
from gateway.store.search import params as registry
from gateway.store.search.criteria import BadParam, Filter, build
from gateway.store.search.values import split_or

DEFAULT_COUNT = 50
MAX_COUNT = 1000
PASS_THROUGH = {"_elements", "_format", "_pretty"}  # applied by the API when rendering
SUMMARY = {"true", "false", "text", "data", "count"}
TOTAL = {"none", "estimate", "accurate"}
SORTABLE = {"token", "string", "date", "quantity", "number", "reference", "uri"}
TOO_COSTLY = "too-costly"
MAX_VALUES = 100  # comma-separated values of one parameter
MAX_TOTAL_VALUES = 500  # … of all parameters: building and compiling the SQL of each
# costs Python time that no database cancel can stop (30 × 100 values through a chain
# with several target types: ~4 s of CPU holding the GIL)
MAX_SORT = 5  # _sort keys
MAX_CHAIN = 3  # links of a chain (subject.organization.name: 2)
MAX_HAS = 2  # nested _has
MAX_INCLUDES = 10  # _include and _revinclude together
MAX_FILTERS = 30  # search parameters (not counting _count, _sort… and _include)


@dataclass(frozen=True, slots=True)
class Include:
    source: str  # resource type holding the reference
    param: str  # reference parameter name, or "*"
    target: str | None  # restrict to this target type
    iterate: bool
    reverse: bool  # _revinclude


@dataclass(slots=True)
class Plan:
    resource_type: str
    filters: list[Filter] = field(default_factory=list)
    sort: list[tuple[str, bool]] = field(default_factory=list)  # (param, descending)
    count: int = DEFAULT_COUNT
    includes: list[Include] = field(default_factory=list)
    total: str = "none"
    summary: str | None = None
    cursor: str | None = None
    applied: list[tuple[str, str]] = field(default_factory=list)
    issues: list[dict[str, Any]] = field(default_factory=list)
    restrict: Restriction | None = None  # the caller's data restriction (None: all)


def make_plan(rtype: str, query: list[tuple[str, str]], *, strict: bool = False,
              base_url: str | None = None, restrict: Restriction | None = None) -> Plan:
    if rtype not in registry.REGISTRY:
        raise SearchError(f"resource type {rtype} is not supported", issues=[
            _issue("error", "not-supported", f"resource type {rtype} is not supported")])
    plan = Plan(rtype, restrict=restrict)
    _check_limits(query)
    for name, value in query:
        try:
            _apply(plan, name, value, base_url)
        except BadParam as exc:
            if exc.code == TOO_COSTLY:
                raise _refused(name, exc) from exc
            plan.issues.append(_issue("error" if strict else "warning", exc.code,
                                      f"{name}: {exc}", name))
    if strict and plan.issues:
        raise SearchError("invalid search parameters", issues=plan.issues)
    return plan


class Limit(BadParam):
    """A search the server refuses as too costly, whatever the handling mode."""

    def __init__(self, message: str) -> None:
        super().__init__(message, TOO_COSTLY)


def _refused(name: str, exc: BadParam) -> SearchError:
    return SearchError("search beyond the server's limits",
                       issues=[_issue("error", exc.code, f"{name}: {exc}", name)])


def _check_limits(query: list[tuple[str, str]]) -> None:
    includes = filters = values = 0
    for name, value in query:
        base = name.split(":")[0]
        if base in ("_include", "_revinclude"):
            includes += 1
            if includes > MAX_INCLUDES:
                raise _refused(name, Limit(f"more than {MAX_INCLUDES} _include/_revinclude "
                                           "parameters in one search"))
        elif base not in RESULT_PARAMS and base not in PASS_THROUGH:
            filters += 1
            try:
                if filters > MAX_FILTERS:
                    raise Limit(f"more than {MAX_FILTERS} search parameters in one search")
                values += _check_filter(name, value)
                if values > MAX_TOTAL_VALUES:
                    raise Limit(f"more than {MAX_TOTAL_VALUES} values in one search")
            except Limit as exc:
                raise _refused(name, exc) from exc


def _check_filter(name: str, value: str) -> int:
    """Raises ``Limit``; returns how many values the parameter has."""
    if name.count("_has:") > MAX_HAS:
        raise Limit(f"{name.count('_has:')} nested _has; at most {MAX_HAS}")
    if name.count(".") > MAX_CHAIN:
        raise Limit(f"a chain of {name.count('.') + 1} parameters; at most "
                    f"{MAX_CHAIN + 1} (that is {MAX_CHAIN} links)")
    count = len(split_or(value)) if "," in value else 1
    if count > MAX_VALUES:
        raise Limit(f"{count} values; at most {MAX_VALUES} per parameter")
    return count


def _issue(severity: str, code: str, text: str, name: str | None = None) -> dict[str, Any]:
    issue: dict[str, Any] = {"severity": severity, "code": code, "diagnostics": text}
    if name:
        issue["expression"] = [name]
    return issue


def _apply(plan: Plan, name: str, value: str, base_url: str | None) -> None:
    if "\x00" in name or "\x00" in value:
        raise BadParam("NUL characters are not allowed")
    base = name.split(":")[0]
    handler = RESULT_PARAMS.get(base)
    if handler is not None and not name.startswith("_has"):
        handler(plan, name, value)
        if base != "_cursor":
            plan.applied.append((name, value))
        return
    if base in PASS_THROUGH:
        plan.applied.append((name, value))
        return
    plan.filters.append(build(plan.resource_type, name, value, base_url, plan.restrict))
    plan.applied.append((name, value))


def _count(plan: Plan, _name: str, value: str) -> None:
    if not value.isdigit():
        raise BadParam("_count takes a non-negative integer")
    plan.count = min(int(value), MAX_COUNT)


def _sort(plan: Plan, _name: str, value: str) -> None:
    keys: list[tuple[str, bool]] = []
    given = [k.strip() for k in value.split(",")]
    if len(given) > MAX_SORT:
        raise Limit(f"{len(given)} sort keys; at most {MAX_SORT}")
    for key in given:
        descending = key.startswith("-")
        pname = key.lstrip("-")
        if any(pname == seen for seen, _ in keys):
            raise Limit(f"'{pname}' is given twice: each sort key at most once")
        definition = registry.lookup(plan.resource_type, pname)
        if definition is None or definition.type not in SORTABLE:
            raise BadParam(f"cannot sort {plan.resource_type} by '{pname}'", "not-supported")
        keys.append((pname, descending))
    plan.sort = keys


def _include(plan: Plan, name: str, value: str) -> None:
    modifier = name.partition(":")[2]
    if modifier not in ("", "iterate", "recurse"):
        raise BadParam(f"{name} is not supported", "not-supported")
    reverse = name.startswith("_revinclude")
    parts = value.split(":")
    if value == "*":
        parts = [plan.resource_type, "*"]
    if len(parts) not in (2, 3) or parts[0] not in registry.REGISTRY:
        raise BadParam("an include is Type:parameter[:targetType]")
    if parts[1] != "*":
        definition = registry.lookup(parts[0], parts[1])
        if definition is None or definition.type != "reference":
            raise BadParam(f"'{parts[1]}' is not a reference parameter of {parts[0]}")
    target = parts[2] if len(parts) == 3 else None
    plan.includes.append(Include(parts[0], parts[1], target, modifier != "", reverse))


def _total(plan: Plan, _name: str, value: str) -> None:
    if value not in TOTAL:
        raise BadParam("_total is none, estimate or accurate")
    plan.total = value


def _summary(plan: Plan, _name: str, value: str) -> None:
    if value not in SUMMARY:
        raise BadParam("_summary is true, false, text, data or count")
    plan.summary = value


def _cursor(plan: Plan, _name: str, value: str) -> None:
    plan.cursor = value


def _unsupported(_plan: Plan, name: str, _value: str) -> None:
    raise BadParam(f"{name} is not supported", "not-supported")


RESULT_PARAMS = {
    "_count": _count, "_sort": _sort, "_include": _include, "_revinclude": _include,
    "_total": _total, "_summary": _summary, "_cursor": _cursor,
    "_contained": _unsupported, "_containedType": _unsupported,
}
