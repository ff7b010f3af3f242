"""Property: whatever a study- or site-restricted client searches for (types, parameters,
chains, ``_has``, includes, revincludes, ``:iterate``, sort, count, paging, summary,
total), no entry of any page and no cursor of any link names a resource it may not see;
and a search without chains or ``_has`` gives exactly the unrestricted result, in the
same order, with the resources it may not see left out (and a total that counts them
out). The rule is modelled independently in tests/api/access_data.py.
"""

from __future__ import annotations

import base64
from collections.abc import Iterator
from typing import Any

import httpx
import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gateway.store.search import params as registry

from .access_data import visible_keys
from .access_support import Served, all_pages, as_client, dataset_server, keys

FILTERS: dict[str, list[tuple[str, list[str]]]] = {
    "Patient": [
        ("gender", ["female", "male"]), ("birthdate", ["ge1970", "lt1980-01-01"]),
        ("_id", ["p1", "p2", "p3,p4"]), ("identifier", ["urn:test:pseudo|P2", "P3"]),
        ("_has:Observation:subject:code", ["718-7", "777-3", "6690-2"]),
        ("_has:ResearchSubject:individual:study", ["ResearchStudy/study-a",
                                                   "ResearchStudy/study-b"]),
        ("_has:Provenance:target:agent", ["Organization/org1", "Organization/org2"]),
    ],
    "Observation": [
        ("code", ["718-7", "777-3", "6690-2", "718-7,777-3"]),
        ("value-quantity", ["gt10", "lt10"]), ("date", ["ge2026-01-12", "lt2026-01-12"]),
        ("subject", ["Patient/p1", "Patient/p2", "Patient/p3"]),
        ("research-study", ["ResearchStudy/study-a", "ResearchStudy/study-b"]),
        ("subject:Patient.gender", ["female", "male"]),
        ("subject:Patient.birthdate", ["1981-02-02", "ge1960"]),
        ("specimen.type", ["119297000"]), ("code:not", ["718-7"]),
        ("_has:Provenance:target:agent", ["Organization/org1", "Organization/org2"]),
    ],
    "Specimen": [("subject", ["Patient/p1", "Patient/p3"]), ("type", ["119297000"]),
                 ("research-study", ["ResearchStudy/study-b"]),
                 ("subject:Patient.gender", ["male"])],
    "ResearchStudy": [("identifier", ["2024-A", "2024-B"]), ("status", ["active"]),
                      ("_has:ResearchSubject:study:individual", ["Patient/p3", "Patient/p2"])],
    "ResearchSubject": [("study", ["ResearchStudy/study-a", "ResearchStudy/study-b"]),
                        ("individual", ["Patient/p3"]),
                        ("individual:Patient.gender", ["female"]),
                        ("study.identifier", ["2024-B"])],
    "Provenance": [("target", ["Patient/p3", "Observation/o3b", "Patient/p1"]),
                   ("agent", ["Organization/org1"]), ("patient", ["Patient/p2"])],
    "Organization": [("identifier", ["urn:plagencell:site|site1"])],
}
INCLUDES = {
    "Patient": [], "Organization": [],
    "Observation": ["Observation:subject", "Observation:specimen", "Observation:has-member"],
    "Specimen": ["Specimen:subject"], "ResearchStudy": [],
    "ResearchSubject": ["ResearchSubject:individual", "ResearchSubject:study"],
    "Provenance": ["Provenance:target", "Provenance:agent"],
}
REVINCLUDES = ["Observation:subject", "Provenance:target", "ResearchSubject:individual",
               "ResearchSubject:study", "Specimen:subject", "Observation:has-member"]
SORTS = {"Patient": ["birthdate", "-birthdate", "gender"], "Observation": ["-date", "code"],
         "Specimen": ["collected"], "ResearchStudy": ["title"], "ResearchSubject": ["status"],
         "Provenance": ["-recorded"], "Organization": ["name"]}
RESTRICTIONS = [("study-a", None), ("study-b", None), ("study-a,study-b", None),
                ("study-c", None), ("2024-B", None), ("", None), (None, "site1"),
                (None, "site2"), ("study-b", "site1")]


@st.composite
def searches(draw: st.DrawFn) -> tuple[str, list[tuple[str, str]]]:
    rtype = draw(st.sampled_from(sorted(FILTERS)))
    params = [(name, draw(st.sampled_from(values)))
              for name, values in draw(st.lists(st.sampled_from(FILTERS[rtype]), max_size=2))]
    if INCLUDES[rtype] and draw(st.booleans()):
        kind = draw(st.sampled_from(["_include", "_include:iterate"]))
        params.append((kind, draw(st.sampled_from(INCLUDES[rtype]))))
    if draw(st.booleans()):
        kind = draw(st.sampled_from(["_revinclude", "_revinclude:iterate"]))
        params.append((kind, draw(st.sampled_from(REVINCLUDES))))
    sorts = ["_id", "-_id", "_lastUpdated", *SORTS[rtype]]
    params += draw(st.sampled_from([[], *([("_sort", s)] for s in sorts)]))
    params += draw(st.sampled_from([[], [("_count", "1")], [("_count", "2")],
                                    [("_count", "0")]]))
    params += draw(st.sampled_from([[], [("_summary", "count")], [("_summary", "true")],
                                    [("_total", "accurate")]]))
    return rtype, params


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def served(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
           ) -> Iterator[Served]:
    yield from dataset_server(request, tmp_path_factory)


def _cursor_ids(page: dict[str, Any]) -> list[str]:
    out = []
    for link in page.get("link", []):
        token = httpx.URL(link["url"]).params.get("_cursor")
        if token:
            out.append(orjson.loads(base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)))
                       ["id"])
    return out


def _run(http: httpx.Client, rtype: str, params: list[tuple[str, str]]
         ) -> tuple[list[str], list[str], list[int], list[str]]:
    pages = all_pages(http, f"/{rtype}", params)
    matches = [k for page in pages for k in keys(page, "match")]
    included = [k for page in pages for k in keys(page, "include")]
    totals = [page["total"] for page in pages if "total" in page]
    cursors = [f"{rtype}/{i}" for page in pages for i in _cursor_ids(page)]
    return matches, included, totals, cursors


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(search=searches(), restriction=st.sampled_from(RESTRICTIONS))
def test_a_restricted_client_never_receives_a_resource_it_may_not_see(
        served: Served, search: tuple[str, list[tuple[str, str]]],
        restriction: tuple[str | None, str | None]) -> None:
    rtype, params = search
    studies, sites = restriction
    allowed = visible_keys(None if studies is None else [s for s in studies.split(",") if s],
                           None if sites is None else [sites])
    with as_client(served, studies=studies, sites=sites) as http:
        matches, included, totals, cursors = _run(http, rtype, params)
    assert set(matches) | set(included) | set(cursors) <= allowed
    with as_client(served) as everyone:
        plain = [_without_hidden_links(everyone, rtype, name, value, allowed)
                 for name, value in params]
        all_matches, _, all_totals, _ = _run(everyone, rtype, plain)
        everything = _everything(everyone, rtype, plain) if all_totals else []
    assert matches == [k for k in all_matches if k in allowed]
    if all_totals:
        assert totals and totals[0] == len([k for k in everything if k in allowed])


def _without_hidden_links(http: httpx.Client, rtype: str, name: str, value: str,
                          allowed: set[str]) -> tuple[str, str]:
    """A chain or ``_has`` as the plain parameter it amounts to for the restricted client:
    the linked resources it matches, asked unrestricted, minus those the client may not
    see (an oracle for the restricted answer that does not use the restriction)."""
    if name.startswith("_has:"):
        _, source, link, inner = name.split(":", 3)
        linked = _visible_matches(http, source, inner, value, allowed)
        return f"_has:{source}:{link}:_id", ",".join(k.split("/")[1] for k in linked) or "none"
    if "." not in name:
        return name, value
    head, _, inner = name.partition(".")
    pname, _, target = head.partition(":")
    definition = registry.lookup(rtype, pname)
    assert definition is not None
    targets = [target] if target else [t for t in definition.targets
                                       if registry.lookup(t, inner.split(":")[0])]
    linked = [k for t in targets for k in _visible_matches(http, t, inner, value, allowed)]
    return pname, ",".join(linked) or "Patient/none"


def _visible_matches(http: httpx.Client, rtype: str, name: str, value: str,
                     allowed: set[str]) -> list[str]:
    found = _run(http, rtype, [(name, value), ("_count", "100")])[0]
    return [k for k in found if k in allowed]


def _everything(http: httpx.Client, rtype: str, params: list[tuple[str, str]]) -> list[str]:
    """All unrestricted matches of the search (its filters only, every page)."""
    filters = [(k, v) for k, v in params if not k.startswith("_") or k in ("_id",)
               or k.startswith("_has")]
    return _run(http, rtype, [*filters, ("_count", "100")])[0]
