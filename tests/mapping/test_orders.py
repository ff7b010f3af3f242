"""Order messages as hospital systems send them: ORM^O01 in v2.3 to v2.5 (ORC, OBR, NTE,
OBX groups), OMG^O19, and ORU^R01 in its v2.3 and v2.4 shapes, mapped like OML^O21."""

from __future__ import annotations

import pytest

from gateway.errors import UnsupportedMessage

from .support import assert_valid, by_type, convert, hl7

PID = "PID|1||MRN12345^^^HSR^MR||ROSSI^MARIO||19850110|M"


def msh(type_: str, version: str, control: str = "O1") -> str:
    return f"MSH|^~\\&|CPOE|HSR|GW|PLAGENCELL|20260101120000||{type_}|{control}|P|{version}"


def orm(version: str) -> str:
    # Two order groups: a CBC ordered with ask-at-order-entry answers (OBX with NTE) and an
    # OBR-15 specimen source (v2.3/2.4 have no SPM); then an order with no OBR (pharmacy).
    return hl7(msh("ORM^O01", version), PID, "PV1|1|O",
               "ORC|NW|PL-77^CPOE||||||||||1234^Bianchi^Luca",
               "OBR|1|PL-77^CPOE||58410-2^CBC panel^LN|||20260101093000||||||||BLD^Blood",
               "NTE|1||Prelievo difficile, chiamare ROSSI Mario al 335 1234567",
               "OBX|1|NM|29463-7^Body weight^LN||72.5|kg^kg^UCUM|||||F",
               "NTE|1||peso riferito dal paziente",
               "ORC|NW|PL-78^CPOE", "RXO|RX123^Ciclosporina^L")


@pytest.mark.parametrize("version", ["2.3", "2.3.1", "2.4", "2.5", "2.5.1"])
def test_an_orm_o01_maps_its_order_groups_like_an_oml_o21(version: str) -> None:
    result = convert(orm(version))
    [obs] = by_type(result, "Observation")
    assert obs["code"]["coding"][0]["code"] == "29463-7"
    assert obs["valueQuantity"]["value"] == 72.5
    assert obs["note"] == [{"text": "peso riferito dal paziente"}]
    assert obs["effectiveDateTime"].startswith("2026-01-01T09:30:00")
    [specimen] = by_type(result, "Specimen")  # OBR-15 blood, OBR-7 collected
    assert obs["specimen"] == {"reference": f"Specimen/{specimen['id']}"}
    assert specimen["collection"]["collectedDateTime"].startswith("2026-01-01T09:30:00")
    assert [i["type"]["coding"][0]["code"] for i in obs["identifier"]] == ["PLAC"]
    assert "RXO[1]" in {e.location for e in result.report}  # reported, not mapped
    text = str(result.resources)
    assert "ROSSI" not in text and "1234567" not in text and "Bianchi" not in text
    assert_valid(result.resources)


def test_an_oru_r01_in_its_v2_3_shape_maps_ce_values_and_the_obr_15_specimen() -> None:
    # v2.3: OBX-5 CE, OBR-15 specimen source, no SPM; PV1 and NK1 before the order
    message = hl7(msh("ORU^R01", "2.3"), PID, "NK1|1|ROSSI^ANNA|SPO", "PV1|1|I",
                  "OBR|1||F-9^LAB|600-7^Blood culture^LN|||20260101080000||||||||BLD",
                  "OBX|1|CE|600-7^Blood culture^LN||NEG^Negative^L||||||F",
                  "NTE|1||Negative after 5 days. Informed ANNA ROSSI.")
    [obs] = by_type(convert(message), "Observation")
    assert obs["valueCodeableConcept"]["coding"][0]["code"] == "NEG"
    assert obs["note"] == [{"text": "Negative after 5 days. Informed [NAME] [NAME]."}]
    assert "specimen" in obs


def test_an_oru_r01_in_its_v2_4_shape_maps_like_v2_5() -> None:
    message = hl7(msh("ORU^R01", "2.4"), PID, "ORC|RE||F-10^LAB",
                  "OBR|1||F-10^LAB|718-7^Hemoglobin^LN|||20260101080000",
                  "OBX|1|NM|718-7^Hemoglobin^LN||13.2|g/dL^g/dL^UCUM|12-16|N|||F")
    [obs] = by_type(convert(message), "Observation")
    assert obs["valueQuantity"] == {"value": 13.2, "unit": "g/dL",
                                    "system": "http://unitsofmeasure.org", "code": "g/dL"}


@pytest.mark.parametrize("kind", ["VXU^V04", "SIU^S12", "MDM^T02", "BAR^P01"])
def test_messages_outside_the_network_s_scope_stay_refused_with_ar_200(kind: str) -> None:
    with pytest.raises(UnsupportedMessage) as info:
        convert(hl7(msh(kind, "2.5.1"), PID))
    assert info.value.err_code == "200"
