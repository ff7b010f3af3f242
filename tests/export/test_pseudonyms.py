"""Per-study pseudonyms on the stored JSON of exported resources (fast unit tests; the
end-to-end ones are in tests/api/test_bulk_export.py)."""

from __future__ import annotations

import orjson

from gateway.export.pseudonyms import StudyPseudonyms

KEY = b"network-key-for-the-pseudonym-tests-0123"


def rewritten(study: str, resource: dict[str, object]) -> dict[str, object]:
    content = orjson.dumps(resource)
    out: dict[str, object] = orjson.loads(
        StudyPseudonyms(KEY, study).apply(str(resource["resourceType"]), content))
    return out


def test_a_patient_gets_its_study_pseudonym_and_loses_what_links_it_back() -> None:
    patient = {"resourceType": "Patient", "id": "p1", "gender": "female",
               "identifier": [{"system": "urn:plagencell:pseudonym:v1", "value": "x"}],
               "link": [{"other": {"reference": "Patient/p2"}, "type": "seealso"}]}
    out = rewritten("s1", patient)
    assert out["id"] == StudyPseudonyms(KEY, "s1").of("p1") and len(str(out["id"])) == 64
    assert "identifier" not in out and "link" not in out and out["gender"] == "female"


def test_every_patient_reference_shape_is_replaced_and_nothing_else() -> None:
    names = StudyPseudonyms(KEY, "s1")
    observation = {"resourceType": "Observation", "id": "o1",
                   "subject": {"reference": "Patient/p1"},
                   "performer": [{"reference": "https://hub.example/fhir/Patient/p1"}],
                   "derivedFrom": [{"reference": "Patient/p1/_history/3"}],
                   "specimen": {"reference": "Specimen/p1"}}
    out = rewritten("s1", observation)
    pseudonym = names.of("p1")
    assert out["subject"] == {"reference": f"Patient/{pseudonym}"}
    assert out["performer"] == [{"reference": f"https://hub.example/fhir/Patient/{pseudonym}"}]
    assert out["derivedFrom"] == [{"reference": f"Patient/{pseudonym}/_history/3"}]
    assert out["specimen"] == {"reference": "Specimen/p1"} and out["id"] == "o1"


def test_pseudonyms_are_stable_per_study_and_unrelated_across_studies_and_keys() -> None:
    assert StudyPseudonyms(KEY, "s1").of("p1") == StudyPseudonyms(KEY, "s1").of("p1")
    assert StudyPseudonyms(KEY, "s1").of("p1") != StudyPseudonyms(KEY, "s2").of("p1")
    assert StudyPseudonyms(KEY, "s1").of("p1") != StudyPseudonyms(KEY, "s1").of("p2")
    other_key = b"another-network-key-0123456789abcdef"
    assert StudyPseudonyms(KEY, "s1").of("p1") != StudyPseudonyms(other_key, "s1").of("p1")
