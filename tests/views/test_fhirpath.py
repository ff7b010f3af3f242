"""The FHIRPath layer: what the library lets through that a view must refuse, the
SQL-on-FHIR functions, the values of a row cell, and the checks of a ViewDefinition."""

from __future__ import annotations

import pytest

from gateway.views.definition import ViewError, compile_view
from gateway.views.engine import RowError, rows
from gateway.views.fhirpath import PathError, compile_path, plain

OBSERVATION = {
    "resourceType": "Observation", "id": "o1", "status": "final",
    "subject": {"reference": "Patient/p1"}, "specimen": {"reference": "Specimen/s1"},
    "valueQuantity": {"value": 4.50, "unit": "mg/L"}, "effectiveDateTime": "2026-01-02",
    "component": [{"code": {"text": "a"}, "valueInteger": 3},
                  {"code": {"text": "b"}, "valueString": "x"}]}


@pytest.mark.parametrize("path", ["name.(", "id id", "foo(", "", "  ", "first(",
                                  "name.where(use = 'x'"])
def test_a_path_the_library_would_half_parse_is_refused(path: str) -> None:
    with pytest.raises(PathError):
        compile_path(path)


@pytest.mark.parametrize(("path", "why"), [
    ("unknownFn()", "unknown function"), ("value.ofType(Nonsense)", "not a FHIR type"),
    ("value.ofType(42)", "not a FHIR type"), ("%nowhere", "undefined constant"),
])
def test_unknown_functions_types_and_constants_are_refused_when_compiled(
        path: str, why: str) -> None:
    with pytest.raises(PathError, match=why):
        compile_path(path)


@pytest.mark.parametrize(("path", "expected"), [
    ("getResourceKey()", ["o1"]),
    ("subject.getReferenceKey()", ["p1"]),
    ("subject.getReferenceKey(Patient)", ["p1"]),
    ("subject.getReferenceKey(Group)", []),
    ("(subject | specimen).getReferenceKey()", ["p1", "s1"]),
    ("value.ofType(Quantity).value", [4.5]),
    ("effective.ofType(dateTime)", ["2026-01-02"]),
    ("component.value.ofType(integer)", [3]),
    ("component.code.text.join('|')", ["a|b"]),
    ("status = 'final' and value.exists()", [True]),
    ("component.where(code.text = 'c').empty()", [True]),
    ("%limit > 3", [True]),
])
def test_paths_give_json_values(path: str, expected: list[object]) -> None:
    run = compile_path(path, {"limit"})
    assert [plain(v) for v in run(OBSERVATION, {"limit": 4})] == expected


def view(**parts: object) -> dict[str, object]:
    return {"resourceType": "ViewDefinition", "resource": "Observation",
            "select": [{"column": [{"name": "id", "path": "id"}]}], **parts}


@pytest.mark.parametrize(("definition", "where"), [
    (view(resource="Nope"), "resource"),
    (view(select=[]), "select"),
    (view(select=[{"column": [{"name": "a b", "path": "id"}]}]), "select[0].column[0].name"),
    (view(select=[{"column": [{"name": "a"}]}]), "select[0].column[0].path"),
    (view(select=[{"column": [{"name": "a", "path": "id"}, {"name": "a", "path": "id"}]}]),
     "select"),
    (view(select=[{"forEach": "component", "forEachOrNull": "component",
                   "column": [{"name": "a", "path": "id"}]}]), "select[0].forEachOrNull"),
    (view(select=[{"column": [{"name": "a", "path": "id", "collection": "yes"}]}]),
     "select[0].column[0].collection"),
    (view(constant=[{"name": "c"}]), "constant[0]"),
    (view(where=[{"path": "id.("}]), "where[0].path"),
    (view(select=[{"unionAll": [{"column": [{"name": "a", "path": "id"}]},
                                {"column": [{"name": "b", "path": "id"}]}]}]),
     "select[0].unionAll[1]"),
])
def test_a_view_that_cannot_run_is_refused_naming_the_place(
        definition: dict[str, object], where: str) -> None:
    with pytest.raises(ViewError) as caught:
        compile_view(definition, {"Observation", "Patient"})
    assert caught.value.where == where


def test_several_values_in_a_single_column_is_an_error_on_the_row() -> None:
    compiled = compile_view(view(select=[{"column": [
        {"name": "codes", "path": "component.code.text"}]}]), {"Observation"})
    with pytest.raises(RowError, match="codes"):
        rows(compiled, OBSERVATION)
