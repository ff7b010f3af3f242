"""Property-based: generated and mutated search query strings never give a 5xx. The store
answers or raises ``SearchError`` (a 400), on both databases; through a real server every
answer is below 500 with an OperationOutcome for the errors."""

from __future__ import annotations

from collections.abc import Iterator
from urllib.parse import urlencode

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gateway.errors import SearchError
from gateway.store.search import params as registry
from gateway.store.sql import SqlStore
from tests.api.conftest import Served, serving

TYPES = ["Observation", "Patient", "Specimen", "ResearchSubject"]
NAMES = sorted({d.name for t in TYPES for d in registry.search_parameters(t)})
MODIFIERS = ["", ":not", ":text", ":exact", ":contains", ":missing", ":below", ":Patient",
             ":iterate", ":identifier", ":above", ":"]
SPECIAL = ["_sort", "_count", "_include", "_revinclude", "_total", "_summary", "_elements",
           "_cursor", "_has:Observation:subject:code", "_has:Observation:patient:_id",
           "_format", "_contained", "_id", "_lastUpdated"]
PREFIXES = ["", "eq", "ne", "gt", "lt", "ge", "le", "sa", "eb", "ap", "xx"]
FIXED_VALUES = ["", ",", "|", "||", "a|b|c", "http://loinc.org|718-7", "2026-01-01",
                "2026-13-45T25:61:00Z", "1e309", "-0", "NaN", "5.4|http://unitsofmeasure.org|g",
                "Patient/pt-1", "http://x/fhir/Patient/1", "Observation:subject",
                "*", "-date,code", "\\,\\|\\$", "718-7$gt5", "true", "null", "%", "_", "\x00",
                "é" * 40, "9" * 40]


def name_strategy() -> st.SearchStrategy[str]:
    plain = st.builds(lambda n, m: n + m, st.sampled_from(NAMES), st.sampled_from(MODIFIERS))
    chained = st.builds(lambda a, b: f"{a}.{b}", st.sampled_from(["subject", "patient",
                                                                  "specimen", "link"]),
                        st.sampled_from(NAMES))
    return st.one_of(plain, chained, st.sampled_from(SPECIAL),
                     st.text(min_size=0, max_size=12))


def value_strategy() -> st.SearchStrategy[str]:
    prefixed = st.builds(lambda p, v: p + v, st.sampled_from(PREFIXES),
                         st.sampled_from(FIXED_VALUES))
    return st.one_of(prefixed, st.text(max_size=30),
                     st.lists(st.sampled_from(FIXED_VALUES), max_size=5).map(",".join))


# a share of the profile's examples (tests/conftest.py): ~110 in the suite, ~5,500 with
# ``make fuzz`` (each runs on both databases)
STORE_EXAMPLES = max(1, settings().max_examples * 4 // 5)
SERVER_EXAMPLES = max(1, settings().max_examples * 3 // 10)
QUERIES = st.lists(st.tuples(name_strategy(), value_strategy()), max_size=6)


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def fuzz_store(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
               ) -> Iterator[SqlStore]:
    from tests.conftest import drop_pg_database, make_pg_database

    name = None
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path_factory.mktemp('fuzz') / 'gateway.db'}"
    else:
        admin = request.getfixturevalue("pg_server")
        url, name = make_pg_database(admin)
    store = SqlStore(url)
    store.migrate()
    store.bulk_put([{"resourceType": "Patient", "id": "pt-1", "gender": "female"},
                    {"resourceType": "Observation", "id": "o1", "status": "final",
                     "code": {"coding": [{"system": "http://loinc.org", "code": "718-7"}]},
                     "subject": {"reference": "Patient/pt-1"},
                     "effectiveDateTime": "2026-01-02T03:04:05Z",
                     "valueQuantity": {"value": 5.4, "system": "http://unitsofmeasure.org",
                                       "code": "g/dL"}}])
    yield store
    store.close()
    if name is not None:
        drop_pg_database(request.getfixturevalue("pg_server"), name)


@settings(max_examples=STORE_EXAMPLES, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(rtype=st.sampled_from(TYPES), query=QUERIES, strict=st.booleans())
def test_generated_searches_answer_or_raise_a_search_error(
        fuzz_store: SqlStore, rtype: str, query: list[tuple[str, str]], strict: bool) -> None:
    try:
        fuzz_store.search(rtype, query, strict=strict)
    except SearchError as exc:
        assert exc.issues and all(issue.get("diagnostics") for issue in exc.issues)


@pytest.fixture(scope="module")
def fuzz_server(fuzz_store: SqlStore) -> Iterator[Served]:
    with serving(fuzz_store) as served:
        yield served


@settings(max_examples=SERVER_EXAMPLES, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(rtype=st.sampled_from(TYPES), query=QUERIES, strict=st.booleans())
def test_generated_query_strings_never_get_a_5xx_from_the_server(
        fuzz_server: Served, rtype: str, query: list[tuple[str, str]], strict: bool) -> None:
    headers = {"Prefer": "handling=strict"} if strict else {}
    with httpx.Client(base_url=fuzz_server.base, timeout=30, headers=headers) as http:
        response = http.get(f"/{rtype}?{urlencode(query)}")
    assert response.status_code < 500, (response.status_code, response.text)
    if response.status_code >= 400:
        assert response.json()["resourceType"] == "OperationOutcome"
