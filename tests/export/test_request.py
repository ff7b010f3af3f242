"""Reading a Bulk Data kick-off: defaults, accepted spellings, and the parameter named in
every refusal (fast unit tests; over HTTP in tests/api/test_bulk_export.py)."""

from __future__ import annotations

import pytest

from gateway.export.request import ExportRequestError, pairs_of_parameters, read_request


def test_defaults_export_every_type_as_fhir_ndjson() -> None:
    request = read_request("system", [])
    assert "Observation" in request.types and "Group" in request.types
    assert request.output_format == "application/fhir+ndjson" and not request.explicit_types
    assert read_request("patient", []).types[0] == "Patient"


@pytest.mark.parametrize("value", ["application/fhir+ndjson", "application/ndjson", "ndjson",
                                   "application/fhir ndjson"])  # "+" decoded as a space
def test_the_three_ndjson_spellings_are_accepted(value: str) -> None:
    assert read_request("system", [("_outputFormat", value)]).output_format == (
        "application/fhir+ndjson")


def test_types_type_filters_and_associated_data_are_kept_in_the_job_params() -> None:
    request = read_request("group", [("_type", "Patient,Observation"), ("_type", "Patient"),
                                     ("_typeFilter", "Observation?code=1988-5"),
                                     ("includeAssociatedData", "LatestProvenanceResources"),
                                     ("_since", "2026-01-01T00:00:00 01:00")], "g1")
    params = request.params()
    assert params["types"] == ["Patient", "Observation", "Provenance"]
    assert params["associated_only"] is True
    assert params["type_filters"] == {"Observation": ["code=1988-5"]}
    assert params["since"] == "2026-01-01T00:00:00+01:00"


@pytest.mark.parametrize(("kind", "pairs", "parameter"), [
    ("system", [("_type", "Nope")], "_type"),
    ("group", [("_type", "ResearchStudy")], "_type"),
    ("system", [("_since", "2026-13-01T00:00:00Z")], "_since"),
    ("system", [("_typeFilter", "Observation?_count=5")], "_typeFilter"),
    ("system", [("_type", "Patient"), ("_typeFilter", "Observation?code=x")], "_typeFilter"),
    ("system", [("_outputFormat", "application/fhir+json")], "_outputFormat"),
    ("patient", [("pseudonymize", "study")], "pseudonymize"),
    ("group", [("pseudonymize", "everyone")], "pseudonymize"),
])
def test_a_wrong_parameter_is_named(kind: str, pairs: list[tuple[str, str]],
                                    parameter: str) -> None:
    with pytest.raises(ExportRequestError) as caught:
        read_request(kind, pairs, "g1")
    assert caught.value.parameter == parameter and str(caught.value)


def test_a_parameters_body_becomes_pairs() -> None:
    body = {"resourceType": "Parameters", "parameter": [
        {"name": "_type", "valueString": "Patient"},
        {"name": "_since", "valueInstant": "2026-01-01T00:00:00Z"}]}
    assert pairs_of_parameters(body) == [("_type", "Patient"),
                                         ("_since", "2026-01-01T00:00:00Z")]
