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

from gateway.store import Resource, SearchResult, now_instant

from .interactions import new_id
from .outcomes import outcome
from .summary import SUMMARY_MODES, apply_elements, apply_summary, parse_elements

CURSOR = "_cursor"
Params = list[tuple[str, str]]
Searcher = Callable[..., SearchResult]


def search_bundle(search: Searcher, rtype: str | None, params: Sequence[tuple[str, str]],
                  base: str, *, strict: bool) -> dict[str, Any]:
    """Run ``search`` (the store's, or a transaction's) and shape its page as a Bundle.

    All parameters but ``_format`` go to the store, which applies the search and paging
    ones, validates ``_summary`` and reports what it applied (for the ``self`` link)."""
    store_params = [(k, v) for k, v in params if k != "_format"]
    given = dict(store_params)
    if given.get("_count") == "0" and "_total" not in given:
        store_params.append(("_total", "accurate"))  # a page of nothing asks for the count
    result = search(rtype, store_params, strict=strict, base_url=base)
    applied = dict(result.applied)
    summary = applied.get("_summary")
    summary = summary if summary in SUMMARY_MODES and summary != "false" else None
    shape = _shaper(summary, parse_elements(applied.get("_elements")))
    entries = [_entry(base, r, "match", shape) for r in result.resources]
    entries += [_entry(base, r, "include", shape) for r in result.included]
    if result.issues:
        entries.append({"resource": outcome(*result.issues), "search": {"mode": "outcome"}})
    return {"resourceType": "Bundle", "id": new_id(), "meta": {"lastUpdated": now_instant()},
            "type": "searchset",
            **({"total": result.total} if result.total is not None else {}),
            "link": _links(base, rtype, result, given.get(CURSOR)),
            "entry": entries}


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


def _links(base: str, rtype: str | None, result: SearchResult, current: str | None
           ) -> list[dict[str, str]]:
    params = result.applied
    links = [{"relation": "self", "url": page_url(base, rtype, params, current)}]
    if result.next_cursor:
        links.append({"relation": "next",
                      "url": page_url(base, rtype, params, result.next_cursor)})
    if result.prev_cursor:
        links.append({"relation": "previous",
                      "url": page_url(base, rtype, params, result.prev_cursor)})
    return links
