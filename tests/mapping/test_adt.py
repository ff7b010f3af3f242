"""ADT patient events: OBX (vital signs), PDA (death facts) and ACC (accident) become
Observations about the pseudonymised Patient, without the identifying fields."""

from __future__ import annotations

import orjson
import pytest

from gateway.errors import UnsupportedMessage
from gateway.mapping.manifest import PATIENT_EVENTS

from .support import assert_valid, by_type, convert, hl7, one

PID = "PID|1||MRN777^^^HSR^MR||VERDI^GIUSEPPE||19500101|M|||VIA ROMA 1^^MILANO"


def msh(event: str, control: str = "A1") -> str:
    return f"MSH|^~\\&|ADT|HSR|GW|PLAGENCELL|20260101120000||ADT^{event}|{control}|P|2.5.1"


# OBX-3 LOINC body weight and height (vital signs), OBX-14 the measurement time
WEIGHT = "OBX|1|NM|29463-7^Body weight^LN||72.5|kg^kg^UCUM|||||F|||20260101093000"
HEIGHT = "OBX|2|NM|8302-2^Body height^LN||178|cm^cm^UCUM|||||F|||20260101093000"
GLUCOSE = "OBX|3|NM|2345-7^Glucose^LN||95|mg/dL^mg/dL^UCUM|||||F|||20260101093000"
# PDA-1 cause, -2 location, -4 date, -5 certifier, -7 autopsy dates, -8 pathologist: dropped
PDA = ("PDA|I21^Acute myocardial infarction^I10|ICCU^Room1^Bed25^GHH|Y|20211102123000|"
       "005454^DeathCert^Robin|Y|20211102103000^20211102113000|002324^Autopsy^John|N")
# ACC-3 location, -7 entered by, -8 description (free text), -11 address
ACC = "ACC|20140317||Route 50 intersection||Y|N|10535^Goldberg^Ludwig|vehicle accident||Y|"


def codes(resource: dict) -> set[str]:
    return {c["code"] for c in resource["code"]["coding"]}


@pytest.mark.parametrize("event", PATIENT_EVENTS)
def test_every_patient_event_maps_its_obx_to_observations_of_the_patient(event: str) -> None:
    result = convert(hl7(msh(event), "EVN|" + event, PID, "PV1|1|I", WEIGHT, HEIGHT))
    patient = one(result, "Patient")
    observations = by_type(result, "Observation")
    assert [sorted(codes(o)) for o in observations] == [["29463-7"], ["8302-2"]]
    for obs in observations:
        assert obs["subject"] == {"reference": f"Patient/{patient['id']}"}
        assert obs["effectiveDateTime"] == "2026-01-01T09:30:00+01:00"
    assert observations[0]["valueQuantity"] == {
        "value": 72.5, "unit": "kg", "system": "http://unitsofmeasure.org", "code": "kg"}
    assert_valid(result.resources)


def test_body_weight_and_height_are_vital_signs_other_codes_laboratory() -> None:
    result = convert(hl7(msh("A08"), PID, WEIGHT, HEIGHT, GLUCOSE))
    categories = [o["category"][0]["coding"][0]["code"] for o in by_type(result, "Observation")]
    assert categories == ["vital-signs", "vital-signs", "laboratory"]


def test_an_adt_observation_id_is_stable_across_resends_and_events() -> None:
    first = by_type(convert(hl7(msh("A01", "C1"), PID, WEIGHT)), "Observation")[0]
    again = by_type(convert(hl7(msh("A08", "C2"), PID, WEIGHT)), "Observation")[0]
    later = by_type(convert(hl7(msh("A08", "C3"), PID, WEIGHT.replace("20260101", "20260201"))),
                    "Observation")[0]
    assert first["id"] == again["id"] != later["id"]


def test_pda_indicators_become_yes_no_observations_without_death_details() -> None:
    result = convert(hl7(msh("A03"), PID, "PV1|1|I", PDA))
    facts = {o["code"]["coding"][0]["code"]: o for o in by_type(result, "Observation")}
    assert set(facts) == {"death-certificate", "autopsy", "coroner"}
    assert "85699-7" in codes(facts["autopsy"])  # LOINC "Autopsy was performed" beside
    values = {k: o["valueCodeableConcept"]["coding"][0]["code"] for k, o in facts.items()}
    assert values == {"death-certificate": "Y", "autopsy": "Y", "coroner": "N"}
    text = orjson.dumps(result.resources).decode()
    for private in ("I21", "ICCU", "Bed25", "2021", "DeathCert", "Robin", "002324", "John"):
        assert private not in text
    assert_valid(result.resources)


def test_acc_flags_are_components_and_the_description_is_kept_scrubbed() -> None:
    # ACC-8 names the patient of the PID: hsr scrubs free text (the default)
    message = hl7(msh("A01"), PID, ACC.replace("vehicle accident", "vehicle accident, Verdi G."))
    hsr = one(convert(message, "hsr"), "Observation")
    assert codes(hsr) == {"injury-incident"}
    assert hsr["effectiveDateTime"] == "2014-03-17"
    assert [(c["code"]["coding"][0]["code"], c["valueCodeableConcept"]["coding"][0]["code"])
            for c in hsr["component"]] == [("AJRI", "Y"), ("ADI", "N"), ("PNI", "Y")]
    assert hsr["valueString"] == "vehicle accident, [NAME] G."
    text = orjson.dumps(hsr).decode()
    assert "Route 50" not in text and "Goldberg" not in text and "Verdi" not in text
    assert_valid([hsr])


def test_a_pda_indicator_that_is_not_y_or_n_is_reported_and_left_out() -> None:
    result = convert(hl7(msh("A03"), PID, "PDA|||X||||||N"))
    assert [codes(o) for o in by_type(result, "Observation")] == [{"coroner"}]
    assert any(e.location == "PDA[1]-3" for e in result.report)


def test_pending_and_scheduling_adt_events_stay_refused_with_ar_201() -> None:
    for event in ("A14", "A16", "A09", "A21"):
        with pytest.raises(UnsupportedMessage) as info:
            convert(hl7(msh(event), PID, WEIGHT))
        assert info.value.err_code == "201"
