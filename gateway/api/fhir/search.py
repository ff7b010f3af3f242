"""Search glue: raw query parameters to the store, the store's page to a searchset Bundle.

The store applies the search and result parameters (``_count``, ``_sort``, ``_include``,
``_revinclude``, ``_total``, the cursor); this module handles what only shapes the
answer (``_summary``, ``_elements``, ``_format``) and builds the Bundle with ``self``,
``next`` and ``previous`` links whose cursor tokens come from the store.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any
from urllib.parse import urlencode

from gateway.store.base import Resource, SearchResult
from gateway.store.content import now_instant

from .interactions import new_id
from .summary import apply_elements, apply_summary, check_summary, parse_elements

CURSOR = "_cursor"
SHAPING = frozenset({"_summary", "_elements", "_format", "_pretty"})
Params = list[tuple[str, str]]
Searcher = Callable[..., SearchResult]


def split_params(params: Sequence[tuple[str, str]]) -> tuple[Params, dict[str, str]]:
    """(what the store applies, what only shapes the answer)."""
    store_params: Params = []
    shaping: dict[str, str] = {}
    for name, value in params:
        if name in SHAPING:
            shaping[name] = value
        else:
            store_params.append((name, value))
    return store_params, shaping


def search_bundle(search: Searcher, rtype: str | None, params: Sequence[tuple[str, str]],
                  base: str, *, strict: bool) -> dict[str, Any]:
    store_params, shaping = split_params(params)
    summary = check_summary(shaping.get("_summary"))
    if summary == "count":
        store_params = [(k, v) for k, v in store_params if k not in ("_count", "_total")]
        store_params += [("_count", "0"), ("_total", "accurate")]
    result = search(rtype, store_params, strict=strict)
    elements = parse_elements(shaping.get("_elements"))
    shape = _shaper(summary, elements)
    entries = [_entry(base, r, "match", shape) for r in result.resources]
    entries += [_entry(base, r, "include", shape) for r in result.included]
    applied = getattr(result, "applied", None)
    self_params = [*(applied if applied is not None else store_params),
                   *((k, v) for k, v in shaping.items() if k != "_format")]
    return {"resourceType": "Bundle", "id": new_id(), "meta": {"lastUpdated": now_instant()},
            "type": "searchset",
            **({"total": result.total} if result.total is not None else {}),
            "link": _links(base, rtype, self_params, result),
            "entry": [] if summary == "count" else entries}


def _shaper(summary: str | None, elements: frozenset[str] | None
            ) -> Callable[[Resource], Resource]:
    if summary not in (None, "count"):
        return lambda r: apply_summary(r, summary)
    if elements is not None:
        return lambda r: apply_elements(r, elements)
    return lambda r: r


def _entry(base: str, resource: Resource, mode: str, shape: Callable[[Resource], Resource]
           ) -> dict[str, Any]:
    return {"fullUrl": f"{base}/{resource['resourceType']}/{resource['id']}",
            "resource": shape(resource), "search": {"mode": mode}}


def page_url(base: str, rtype: str | None, params: Params, cursor: str | None = None) -> str:
    pairs = [(k, v) for k, v in params if k != CURSOR]
    if cursor is not None:
        pairs.append((CURSOR, cursor))
    path = f"{base}/{rtype}" if rtype else base
    return f"{path}?{urlencode(pairs)}" if pairs else path


def _links(base: str, rtype: str | None, params: Params, result: SearchResult
           ) -> list[dict[str, str]]:
    current = dict(params).get(CURSOR)
    links = [{"relation": "self", "url": page_url(base, rtype, params, current)}]
    if result.next_cursor:
        links.append({"relation": "next",
                      "url": page_url(base, rtype, params, result.next_cursor)})
    if result.prev_cursor:
        links.append({"relation": "previous",
                      "url": page_url(base, rtype, params, result.prev_cursor)})
    return links
