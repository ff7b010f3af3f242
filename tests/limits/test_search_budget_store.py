"""The store side of bounded searches: a ``Budget`` stops the query in the database
(SQLite progress handler, PostgreSQL statement_timeout / cancel), limits refuse costly
searches before any SQL, and multi-key sorts read each resource's own index rows."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest
from sqlalchemy import text

from gateway.errors import Cancelled, SearchError
from gateway.store.budget import Budget
from gateway.store.search.order import segments
from gateway.store.search.plan import make_plan
from gateway.store.sql import SqlStore
from tests.limits.heavy import N, heavy_params, load


def test_a_search_beyond_its_budget_is_stopped_in_the_database(loaded: SqlStore) -> None:
    start = time.monotonic()
    with pytest.raises(Cancelled) as caught:
        loaded.search("Observation", heavy_params(), budget=Budget(0.02))
    elapsed = time.monotonic() - start
    assert caught.value.reason == "budget"
    assert "time budget of 0.02 s" in caught.value.message
    assert elapsed < 0.5, elapsed
    # the same search without a budget finishes: it was the budget that stopped it
    assert loaded.search("Observation", heavy_params()).total == N


def test_a_cancel_from_another_thread_stops_the_running_query(loaded: SqlStore) -> None:
    budget = Budget(60)
    threading.Timer(0.02, budget.cancel, args=("disconnect",)).start()
    start = time.monotonic()
    with pytest.raises(Cancelled) as caught:
        loaded.search("Observation", heavy_params(), budget=budget)
    assert caught.value.reason == "disconnect"
    assert time.monotonic() - start < 0.5


def test_the_connection_is_usable_after_a_cancelled_query(loaded: SqlStore) -> None:
    for _ in range(3):
        with pytest.raises(Cancelled):
            loaded.search("Observation", heavy_params(), budget=Budget(0.02))
    page = loaded.search("Observation", [("code", "718-7"), ("_count", "3")],
                         budget=Budget(10))
    assert len(page.resources) == 3


@pytest.mark.parametrize("loaded", ["postgresql"], indirect=True)  # SQLite: no server clock
def test_a_server_timeout_before_the_gateway_clock_runs_out_is_still_the_budget(
        loaded: SqlStore) -> None:
    """PostgreSQL counts statement_timeout on its own clock and may stop the query a moment
    before the gateway sees the budget spent (CI saw that as a 'database error'). Here the
    gateway's clock never moves, so only the server can end the query."""
    frozen = time.monotonic()
    with pytest.raises(Cancelled) as caught:
        loaded.search("Observation", heavy_params(), budget=Budget(0.05, clock=lambda: frozen))
    assert caught.value.reason == "budget"


def test_a_search_within_its_budget_answers_as_without_one(loaded: SqlStore) -> None:
    params = [("code", "718-7"), ("_sort", "-date"), ("_count", "5")]
    bounded = loaded.search("Observation", params, budget=Budget(10))
    free = loaded.search("Observation", params)
    assert [r["id"] for r in bounded.resources] == [r["id"] for r in free.resources]


LIMITED = [
    ("998 values of one token", "Observation",
     [("code", ",".join(f"c{i}" for i in range(998)))], "998 values; at most 100"),
    ("a chain of 50 links", "Patient", [("link" + ".link" * 49 + ".name", "x")],
     "a chain of 51 parameters"),
    ("20 nested _has", "Patient", [("_has:Patient:link:" * 20 + "name", "x")],
     "20 nested _has; at most 2"),
    ("500 sort keys", "Observation", [("_sort", ",".join(["-date"] * 500))],
     "500 sort keys; at most 5"),
    ("a sort key given twice", "Observation", [("_sort", "-date,-date")],
     "'date' is given twice"),
    ("11 includes", "Observation", [("_include", "Observation:subject")] * 11,
     "more than 10 _include"),
    ("31 search parameters", "Observation", [("status", "final")] * 31,
     "more than 30 search parameters"),
    ("501 values in all", "Provenance",
     [("target.identifier", ",".join(f"v{i}" for i in range(100)))] * 6,
     "more than 500 values in one search"),
]


@pytest.mark.parametrize("strict", [False, True])
@pytest.mark.parametrize(("case", "rtype", "params", "says"), LIMITED,
                         ids=[c[0] for c in LIMITED])
def test_a_search_beyond_a_limit_is_refused_as_too_costly_before_any_sql(
        case: str, rtype: str, params: list[tuple[str, str]], says: str, strict: bool) -> None:
    with pytest.raises(SearchError) as caught:
        make_plan(rtype, params, strict=strict)
    issue = caught.value.issues[0]
    assert issue["code"] == "too-costly" and issue["severity"] == "error"
    assert says in str(issue["diagnostics"])
    assert issue["expression"] == [params[0][0]]


def test_searches_at_the_limits_run(database_url: str) -> None:
    store = SqlStore(database_url)
    store.migrate()
    try:
        at_limits = [("code", ",".join(f"c{i}" for i in range(100))),
                     ("subject.link.link.name", "x"),
                     ("_sort", "-date,code,subject,status,-_lastUpdated")]
        assert store.search("Observation", at_limits).resources == []
        assert store.search("Patient", [("_has:Patient:link:_has:Patient:link:name", "x")]
                            ).resources == []
    finally:
        store.close()


def test_a_multi_key_sort_reads_each_resources_own_index_rows_without_statistics(
        tmp_path: Path) -> None:
    """Without planner statistics SQLite answered MAX(high) by walking ix_date_high (all
    dates of the type) for every row: _sort=code,-date took 104 s over 50k Observations."""
    store = SqlStore(f"sqlite:///{tmp_path / 'g.db'}")
    store.migrate()
    load(store, 200)
    with store.engine.connect() as conn:
        conn.execute(text("DROP TABLE IF EXISTS sqlite_stat1"))
        conn.commit()
    store.close()
    store = SqlStore(f"sqlite:///{tmp_path / 'g.db'}")
    with store.engine.connect() as conn:
        plan = make_plan("Observation", [("_sort", "code,-date,-value-quantity")])
        query = segments(conn, plan)[0].query
        sql = str(query.compile(conn, compile_kwargs={"literal_binds": True}))
        steps = [row[3] for row in conn.exec_driver_sql("EXPLAIN QUERY PLAN " + sql)]
    store.close()
    probes = [step for step in steps if step.startswith("SEARCH idx_")]
    assert len(probes) == 3, steps
    assert all("_res " in step and "res_id=?" in step for step in probes), steps
