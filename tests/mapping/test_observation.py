"""OBX → Observation: value[x] by OBX-2, units, ranges, flags, status, times, privacy."""

from __future__ import annotations

import orjson
import pytest

from gateway.adapters.site import Coding
from gateway.errors import MappingError
from tests.mapping.results_helpers import SITE, SUBJECT, mapped, message, of_type, with_free_text

ORC = "ORC|RE|ORD-55123^HPG23-CPOE|LAB-998877^HPG23-LAB"
OBR = "OBR|1|ORD-55123^HPG23-CPOE|LAB-998877^HPG23-LAB|CART-MON^CAR-T panel^L|||20261127061000"
# OBX-2 NM, OBX-3 LOINC + local, OBX-5 48.2, OBX-6 UCUM, OBX-7 range, OBX-8 H, OBX-11 F,
# OBX-14 with zone.
CRP = ("OBX|1|NM|1988-5^CRP^LN^PCR^Proteina C^L||48.2|mg/L^mg/L^UCUM|0.0-5.0|H|||{status}|||"
       "20261127061000+0100")


def observation(*obx: str, site=SITE, status: str = "F") -> dict:
    ctx = mapped(message("ORU^R01^ORU_R01", ORC, OBR, *obx or (CRP.format(status=status),)),
                 site)
    return of_type(ctx, "Observation")[0]


def test_an_nm_result_becomes_a_ucum_quantity_with_range_flag_status_and_time() -> None:
    obs = observation()
    assert obs["valueQuantity"] == {"value": 48.2, "unit": "mg/L",
                                    "system": "http://unitsofmeasure.org", "code": "mg/L"}
    assert obs["referenceRange"][0]["low"]["value"] == 0.0
    assert obs["referenceRange"][0]["high"]["value"] == 5.0
    assert obs["interpretation"][0]["coding"][0]["code"] == "H"
    assert obs["status"] == "final"
    assert obs["effectiveDateTime"] == "2026-11-27T06:10:00+01:00"
    assert obs["subject"] == SUBJECT
    assert obs["category"][0]["coding"][0]["code"] == "laboratory"
    assert obs["code"]["coding"][0] == {"system": "http://loinc.org", "code": "1988-5",
                                        "display": "CRP"}


def test_a_corrected_resend_keeps_the_observation_id_and_says_corrected() -> None:
    first, corrected = observation(status="F"), observation(status="C")
    assert first["id"] == corrected["id"]
    assert corrected["status"] == "corrected"


def test_adding_a_local_code_to_the_code_map_keeps_the_observation_id() -> None:
    # OBX-3 a local code only (system L): unmapped first, then mapped to LOINC
    obx = "OBX|1|NM|GLU^Glucose^L||5.4|mmol/L^mmol/L^UCUM|||||F"
    mapped_site = SITE.model_copy(update={"code_map": {
        "GLU": Coding(system="http://loinc.org", code="15074-8", display="Glucose")}})
    before, after = observation(obx), observation(obx, site=mapped_site)
    assert before["code"]["coding"][0]["system"] == "urn:plagencell:site:hpg23:codes"
    assert after["code"]["coding"][0]["code"] == "15074-8"
    assert before["id"] == after["id"]


def test_the_observation_id_follows_obx3_as_sent_and_its_coding_system() -> None:
    as_local = observation("OBX|1|NM|GLU^Glucose^L||5.4|mmol/L|||||F")
    other_code = observation("OBX|1|NM|GLU2^Glucose^L||5.4|mmol/L|||||F")
    other_system = observation("OBX|1|NM|GLU^Glucose^99LAB||5.4|mmol/L|||||F")
    assert len({as_local["id"], other_code["id"], other_system["id"]}) == 3


def test_order_numbers_never_appear_in_clear() -> None:
    text = orjson.dumps(observation()).decode()
    assert "ORD-55123" not in text and "LAB-998877" not in text
    assert {i["type"]["coding"][0]["code"] for i in observation()["identifier"]} == {
        "PLAC", "FILL"}


@pytest.mark.parametrize(("obx", "key", "value"), [
    ("OBX|1|SN|1988-5^CRP^LN||<^5|mg/L^^UCUM", "valueQuantity",
     {"value": 5, "comparator": "<", "unit": "mg/L", "system": "http://unitsofmeasure.org",
      "code": "mg/L"}),
    ("OBX|1|SN|1988-5^CRP^LN||^1^:^64", "valueRatio",
     {"numerator": {"value": 1}, "denominator": {"value": 64}}),
    ("OBX|1|CWE|94309-2^SARS-CoV-2^LN||260373001^Detected^SCT", "valueCodeableConcept",
     {"coding": [{"system": "http://snomed.info/sct", "code": "260373001",
                  "display": "Detected"}], "text": "Detected"}),
    ("OBX|1|ST|1988-5^CRP^LN||haemolysed", "valueString", "haemolysed"),
    ("OBX|1|DT|1988-5^CRP^LN||20261126", "valueDateTime", "2026-11-26"),
    ("OBX|1|TM|1988-5^CRP^LN||0830", "valueTime", "08:30:00"),
    ("OBX|1|NR|1988-5^CRP^LN||2^8", "valueRange", {"low": {"value": 2}, "high": {"value": 8}}),
])
def test_obx_2_chooses_the_value_type(obx: str, key: str, value: object) -> None:
    assert observation(obx)[key] == value


def test_free_text_is_kept_as_value_string_and_dropped_only_when_the_site_drops_it() -> None:
    obx = "OBX|1|TX|1988-5^CRP^LN||Many spherocytes present."
    kept = mapped(message("ORU^R01", OBR, obx))
    assert of_type(kept, "Observation")[0]["valueString"] == "Many spherocytes present."
    ctx = mapped(message("ORU^R01", OBR, obx), with_free_text("drop"))
    assert "valueString" not in of_type(ctx, "Observation")[0]
    assert [e.location for e in ctx.report if e.code == "suppressed"] == ["OBX[1]-5"]


def test_nte_after_an_obx_becomes_a_note_unless_the_site_drops_free_text() -> None:
    text = message("ORU^R01", OBR, CRP.format(status="F"), "NTE|1||sample haemolysed")
    assert of_type(mapped(text), "Observation")[0]["note"] == [{"text": "sample haemolysed"}]
    assert "note" not in of_type(mapped(text, with_free_text("drop")), "Observation")[0]


def test_an_unmapped_local_code_is_kept_with_the_site_system_and_reported() -> None:
    ctx = mapped(message("ORU^R01", OBR, "OBX|1|NM|CD3CAR^CAR+ CD3+^L||120|/uL"))
    obs = of_type(ctx, "Observation")[0]
    assert obs["code"]["coding"] == [{"system": "urn:plagencell:site:hpg23:codes",
                                      "code": "CD3CAR", "display": "CAR+ CD3+"}]
    assert [(e.code, e.location) for e in ctx.report] == [("code-invalid", "OBX[1]-3")]


def test_a_mapped_local_code_puts_the_standard_coding_first() -> None:
    site = SITE.model_copy(update={"code_map": {"CD3CAR": Coding(
        system="http://loinc.org", code="99999-9", display="CAR+ T cells")}})
    ctx = mapped(message("ORU^R01", OBR, "OBX|1|NM|CD3CAR^CAR+ CD3+^L||120|/uL"), site)
    obs = of_type(ctx, "Observation")[0]
    assert [c["code"] for c in obs["code"]["coding"]] == ["99999-9", "CD3CAR"]
    assert not ctx.report


def test_a_missing_obx_2_is_inferred_and_reported() -> None:
    ctx = mapped(message("ORU^R01", OBR, "OBX|1||1988-5^CRP^LN||12.5|mg/L"))
    assert of_type(ctx, "Observation")[0]["valueQuantity"]["value"] == 12.5
    assert [e.location for e in ctx.report] == ["OBX[1]-2"]


def test_a_non_numeric_nm_rejects_the_message_with_ae_at_obx_5() -> None:
    with pytest.raises(MappingError) as info:
        mapped(message("ORU^R01", OBR, "OBX|1|NM|1988-5^CRP^LN||twelve|mg/L"))
    assert info.value.ack_code == "AE"
    loc = info.value.location
    assert (loc.segment, loc.sequence, loc.field) == ("OBX", 1, 5)
    assert "twelve" not in str(info.value)


def test_an_invalid_obx_14_is_reported_and_obr_7_is_used() -> None:
    ctx = mapped(message("ORU^R01", OBR, "OBX|1|NM|1988-5^CRP^LN||1|mg/L|||||F|||2026113"))
    assert of_type(ctx, "Observation")[0]["effectiveDateTime"] == "2026-11-27T06:10:00+01:00"
    assert [(e.code, e.location) for e in ctx.report] == [("invalid", "OBX[1]-14")]


def test_an_obx_without_obx_3_is_not_mapped_and_reported_as_an_error() -> None:
    ctx = mapped(message("ORU^R01", OBR, "OBX|1|NM|||5|mg/L", CRP.format(status="F")))
    assert len(of_type(ctx, "Observation")) == 1
    assert [(e.severity, e.location) for e in ctx.report] == [("error", "OBX[1]-3")]


def test_two_obx_with_the_same_code_get_distinct_stable_ids() -> None:
    text = message("ORU^R01", OBR, CRP.format(status="F"), CRP.format(status="F"))
    ids = [o["id"] for o in of_type(mapped(text), "Observation")]
    assert len(set(ids)) == 2
    assert ids == [o["id"] for o in of_type(mapped(text), "Observation")]


def test_an_nm_value_with_a_leading_comparator_becomes_quantity_comparator() -> None:
    # OBX-2 NM with "<0.5": below the limit of detection, not a data type error
    from gateway.mapping.datatypes import split_comparator

    assert split_comparator("<0.5") == ("<", "0.5")
    assert split_comparator(" >= 12 ") == (">=", "12")
    assert split_comparator("7.1") == (None, "7.1")


def test_a_repeated_coded_obx_5_maps_the_first_and_reports_the_rest() -> None:
    ctx = mapped(message("ORU^R01", OBR, "OBX|1|CWE|94309-2^SARS^LN||POS^Positive~NEG"))
    assert of_type(ctx, "Observation")[0]["valueCodeableConcept"]["coding"][0]["code"] == "POS"
    assert [e.location for e in ctx.report if "repeats" in e.diagnostics] == ["OBX[1]-5"]


def test_post_infusion_monitoring_from_a_hospital_lab_maps_all_ten_results() -> None:
    # tests/samples/oru_r01_10obx.hl7: HPG23 CAR-T monitoring panel, LOINC + local codes,
    # UCUM units, ranges, flags; OBR-15 venous blood, no SPM.
    from pathlib import Path

    from gateway.adapters.loader import load_network
    from gateway.hl7.parser import parse
    from gateway.mapping import map_message

    raw = (Path(__file__).parents[1] / "samples" / "oru_r01_10obx.hl7").read_bytes()
    network = load_network()
    msg = parse(raw)
    site = network.site_for(msg.sending_facility)
    assert site is not None
    result = map_message(msg, site, pseudonym_key=b"k" * 32, received="2026-11-27T07:30:20Z",
                         studies=network.studies)
    observations = [r for r in result.resources if r["resourceType"] == "Observation"]
    specimens = [r for r in result.resources if r["resourceType"] == "Specimen"]
    assert len(observations) == 10 and len(specimens) == 1
    for obs in observations:
        assert obs["code"]["coding"][0]["system"] == "http://loinc.org"
        assert obs["valueQuantity"]["system"] == "http://unitsofmeasure.org"
        assert obs["effectiveDateTime"] == "2026-11-27T06:10:00+01:00"
        assert obs["interpretation"][0]["coding"][0]["code"] in {"H", "L"}
        assert obs["specimen"] == {"reference": f"Specimen/{specimens[0]['id']}"}
        assert obs["subject"]["reference"].startswith("Patient/")
    assert specimens[0]["type"]["coding"][0]["code"] == "BLDV"
    assert not [e for e in result.report if e.code == "code-invalid"]
    text = orjson.dumps(result.resources).decode()
    assert "ORD-2026-55123" not in text and "LAB-2026-998877" not in text


def test_an_nm_below_the_detection_limit_keeps_its_comparator() -> None:
    obs = observation("OBX|1|NM|26881-3^IL-6^LN||<1.5|pg/mL")
    assert obs["valueQuantity"]["comparator"] == "<"
    assert obs["valueQuantity"]["value"] == 1.5


def test_an_sn_range_with_a_dash_in_sn_1_is_a_range_and_sn_1_is_reported() -> None:
    ctx = mapped(message("ORU^R01^ORU_R01", ORC, OBR,
                         "OBX|1|SN|8675-3^Fake^LN||-^1^-^3|cm^cm^UCUM|||||F"), SITE)
    obs = of_type(ctx, "Observation")[0]
    assert obs["valueRange"]["low"]["value"] == 1 and obs["valueRange"]["high"]["value"] == 3
    assert [e.location for e in ctx.report if "SN-1" in e.diagnostics] == ["OBX[1]-5"]


def test_memoised_ranges_and_flags_are_not_shared_between_observations() -> None:
    crp2 = CRP.format(status="F").replace("OBX|1|", "OBX|2|").replace("^L||", "^L|2|")
    ctx = mapped(message("ORU^R01^ORU_R01", ORC, OBR, CRP.format(status="F"), crp2), SITE)
    first, second = of_type(ctx, "Observation")
    first["referenceRange"][0]["low"]["value"] = -1
    first["interpretation"][0]["coding"][0]["code"] = "X"
    assert second["referenceRange"][0]["low"]["value"] == 0.0
    assert second["interpretation"][0]["coding"][0]["code"] == "H"


def test_a_strict_site_refuses_an_unmapped_local_code_with_ae_103_at_obx_3() -> None:
    strict = SITE.model_copy(update={"unmapped_codes": "strict"})
    with pytest.raises(MappingError) as info:
        mapped(message("ORU^R01", OBR, "OBX|1|NM|CD3CAR^CAR+ CD3+^L||120|/uL"), strict)
    assert (info.value.ack_code, info.value.err_code, str(info.value.location)) == (
        "AE", "103", "OBX-3")
    assert "code_map" in str(info.value) and "CD3CAR" not in str(info.value)
