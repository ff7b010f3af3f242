"""Index extraction and value parsing, without a database."""

from __future__ import annotations

import pytest

from gateway.store.search.index import index_rows
from gateway.store.search.values import date_range, decimal_range, normalise, split_escaped


def rows(resource: dict[str, object], kind: str, param: str) -> list[dict[str, object]]:
    return [{k: v for k, v in row.items() if k != "param"}
            for row in index_rows(resource).get(kind, []) if row["param"] == param]


def test_date_ranges_have_the_width_of_their_precision() -> None:
    year = date_range("2024")
    assert year[1] - year[0] == 366 * 86_400_000  # a leap year
    assert date_range("2024-02")[1] - date_range("2024-02")[0] == 29 * 86_400_000
    assert date_range("2024-02-29T10:00:00Z")[1] - date_range("2024-02-29T10:00:00Z")[0] == 1000
    assert date_range("2024-02-29T11:00:00+01:00") == date_range("2024-02-29T10:00:00Z")
    assert date_range("2024-12")[1] == date_range("2025")[0]
    with pytest.raises(ValueError):
        date_range("29/02/2024")


def test_decimals_carry_their_implicit_precision() -> None:
    assert decimal_range("5.4") == (5.4, 5.35, 5.45)
    assert decimal_range("100") == (100.0, 99.5, 100.5)
    with pytest.raises(ValueError):
        decimal_range("five")


def test_normalise_and_escaped_split() -> None:
    assert normalise("  Ferrè ÉLODIE ") == "ferre elodie"
    assert split_escaped(r"urn:a\|b|code\,1", "|") == ["urn:a|b", "code,1"]


def test_patient_shapes_are_indexed_by_element_type() -> None:
    patient = {
        "resourceType": "Patient", "id": "p",
        "name": [{"family": "Rossi", "given": ["Anna", "Maria"], "prefix": ["Dr"]}],
        "address": [{"line": ["Via Roma 1"], "city": "Milano", "postalCode": "20121"}],
        "telecom": [{"system": "phone", "value": "+39 02 1"},
                    {"system": "email", "value": "a@b.it"}],
        "identifier": [{"system": "urn:pseudo", "value": "PS-1"}],
        "deceasedDateTime": "2020-01-01", "gender": "female",
    }
    assert {r["value"] for r in rows(patient, "string", "name")} == {
        "Rossi", "Anna", "Maria", "Dr"}
    assert {r["value"] for r in rows(patient, "string", "address")} == {
        "Via Roma 1", "Milano", "20121"}
    assert rows(patient, "token", "email") == [{"system": "email", "code": "a@b.it",
                                                "text": None}]
    assert rows(patient, "token", "deceased") == [{"system": None, "code": "true",
                                                   "text": None}]
    assert rows(patient, "token", "identifier")[0]["code"] == "PS-1"
    assert rows(patient, "date", "death-date") == [{"low": date_range("2020-01-01")[0],
                                                    "high": date_range("2020-01-01")[1]}]


def test_references_outside_the_declared_targets_are_not_indexed() -> None:
    specimen = {"resourceType": "Specimen", "id": "s",
                "subject": {"reference": "Group/g1"}}
    assert rows(specimen, "reference", "subject") == [
        {"target_type": "Group", "target_id": "g1", "url": None}]
    assert rows(specimen, "reference", "patient") == []


def test_a_malformed_date_is_skipped_not_fatal() -> None:
    observation = {"resourceType": "Observation", "id": "o", "status": "final",
                   "effectiveDateTime": "yesterday"}
    assert rows(observation, "date", "date") == []
    assert rows(observation, "token", "status")[0]["code"] == "final"


def test_index_row_tuples_follow_their_tables_columns() -> None:
    """``index_values`` rows are written as they are (COPY): their order is the table's."""
    from gateway.store import schema
    from gateway.store.search.index import COLUMNS

    assert set(COLUMNS) == set(schema.INDEX_TABLES)
    for kind, table in schema.INDEX_TABLES.items():
        assert COLUMNS[kind] == tuple(c.name for c in table.columns)[2:]
