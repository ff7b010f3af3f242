"""SPM → Specimen: identifiers (hashed, DINs in clear), parent chain, type, times; and which
Specimen each Observation references in ORU^R01, OUL^R22 and OML^O21."""

from __future__ import annotations

import orjson
import pytest

from gateway.mapping.specimen import din_of
from gateway.mapping.tables import ISBT128_DIN
from tests.mapping.results_helpers import mapped, message, of_type

OBR = "OBR|1|ORD1^CPOE|LAB1^LIS|CART-REL^CAR-T release panel^L|||20261120100000+0100"
VIAB = "OBX|1|NM|VIAB^Viability^L||92.5|%^^UCUM|>=70||||F"
APHERESIS = "W123426000123"
PRODUCT = "W123426000456"
RELEASE = "W123426000789"


@pytest.mark.parametrize(("value", "namespace", "din"), [
    (APHERESIS, "", APHERESIS),
    ("w1234 26 000123", "", APHERESIS),
    ("=W12342600012300X", "ISBT128", APHERESIS),  # data identifier, flags, check char
    ("W12342600012300X", "", None),  # extra characters without the ISBT128 namespace
    ("1234567890123", "", None),  # FIN starts with a letter
    ("SPEC-0001", "ISBT128", None),
])
def test_a_din_is_recognised_by_its_structure(value: str, namespace: str,
                                              din: str | None) -> None:
    assert din_of(value, namespace) == din


def spm(din: str, parent: str = "", kind: str = "") -> str:
    return f"SPM|1|{din}&ISBT128||{kind}|||||||||||||20261120080000+0100" \
        .replace("||", f"|{parent}&ISBT128|", 1) if parent else \
        f"SPM|1|{din}&ISBT128|||||||||||||||20261120080000+0100"


def test_a_cart_chain_of_identity_links_messages_through_din_specimen_ids() -> None:
    # message 1: the apheresis; message 2: the product made from it; message 3: the release
    # sample of the product (each parent named in SPM-3 of the next message).
    m1 = mapped(message("OUL^R22", spm(APHERESIS), OBR, VIAB, n=1))
    m2 = mapped(message("OUL^R22", spm(PRODUCT, APHERESIS), OBR, VIAB, n=2))
    m3 = mapped(message("OUL^R22", spm(RELEASE, PRODUCT), OBR, VIAB, n=3))
    aph = of_type(m1, "Specimen")[0]
    product = next(s for s in of_type(m2, "Specimen") if "parent" in s)
    release = next(s for s in of_type(m3, "Specimen") if "parent" in s)
    assert aph["identifier"] == [{"system": ISBT128_DIN, "value": APHERESIS}]
    assert product["parent"] == [{"reference": f"Specimen/{aph['id']}"}]
    assert release["parent"] == [{"reference": f"Specimen/{product['id']}"}]
    stub = next(s for s in of_type(m3, "Specimen") if "parent" not in s)
    assert stub["id"] == product["id"] and ("Specimen", stub["id"]) in m3.create_only
    assert ("Specimen", release["id"]) not in m3.create_only
    assert of_type(m3, "Observation")[0]["specimen"] == {"reference": f"Specimen/{release['id']}"}


def test_lab_specimen_numbers_are_hashed() -> None:
    ctx = mapped(message("ORU^R01", OBR, VIAB, "SPM|1|S-4711&LIS^F-0815&LAB||BLD"))
    text = orjson.dumps(list(ctx.resources.values())).decode()
    assert "S-4711" not in text and "F-0815" not in text
    spec = of_type(ctx, "Specimen")[0]
    assert {i["type"]["coding"][0]["code"] for i in spec["identifier"]} == {"PLAC", "FILL"}
    assert spec["type"]["coding"][0] == {
        "system": "http://terminology.hl7.org/CodeSystem/v2-0487", "code": "BLD"}


def test_spm_times_type_and_quantity_are_mapped() -> None:
    ctx = mapped(message("ORU^R01", OBR, VIAB,
                         "SPM|1|S1||BLDV^Venous blood^HL70487|||||||P|10^mL&&UCUM|||||"
                         "20261127061000^20261127061500|20261127062000+0100||||||"
                         "AMB^Ambient^HL70493"))
    spec = of_type(ctx, "Specimen")[0]
    assert spec["collection"]["collectedPeriod"] == {"start": "2026-11-27T06:10:00+01:00",
                                                     "end": "2026-11-27T06:15:00+01:00"}
    assert spec["collection"]["quantity"]["code"] == "mL"
    assert spec["receivedTime"] == "2026-11-27T06:20:00+01:00"
    assert spec["condition"][0]["coding"][0]["code"] == "AMB"


def test_with_one_spm_in_the_order_group_every_observation_references_it() -> None:
    ctx = mapped(message("ORU^R01", OBR, VIAB, VIAB.replace("VIAB", "CD3"), "SPM|1|S1||BLD"))
    spec = of_type(ctx, "Specimen")[0]
    assert [o["specimen"] for o in of_type(ctx, "Observation")] == [
        {"reference": f"Specimen/{spec['id']}"}] * 2


def test_obx_in_a_specimen_group_references_its_own_spm() -> None:
    ctx = mapped(message("ORU^R01", OBR, VIAB, "SPM|1|S1||BLD",
                         "OBX|2|NM|VOL^Volume^L||5|mL", "SPM|2|S2||SER",
                         "OBX|3|NM|VOL^Volume^L||2|mL"))
    s1, s2 = of_type(ctx, "Specimen")
    obs = of_type(ctx, "Observation")
    assert "specimen" not in obs[0]  # two SPMs: the result OBX is not guessed
    assert obs[1]["specimen"]["reference"] == f"Specimen/{s1['id']}"
    assert obs[2]["specimen"]["reference"] == f"Specimen/{s2['id']}"


def test_an_oml_o21_spm_after_the_obr_gives_its_specimen_to_the_order() -> None:
    ctx = mapped(message("OML^O21", "ORC|NW|ORD1", OBR, VIAB, "SPM|1|S1||BLD"))
    spec = of_type(ctx, "Specimen")[0]
    assert of_type(ctx, "Observation")[0]["specimen"]["reference"] == f"Specimen/{spec['id']}"


def test_an_order_without_spm_gets_a_specimen_from_obr_7_and_obr_15() -> None:
    obr = OBR + "||||||||BLD&Blood"  # OBR-15, no coding system: table 0070
    ctx = mapped(message("ORU^R01^ORU_R01", obr, VIAB))
    spec = of_type(ctx, "Specimen")[0]
    assert spec["collection"]["collectedDateTime"] == "2026-11-20T10:00:00+01:00"
    assert spec["type"]["coding"][0] == {
        "system": "http://terminology.hl7.org/CodeSystem/v2-0070", "code": "BLD",
        "display": "Blood"}
    assert of_type(ctx, "Observation")[0]["specimen"]["reference"] == f"Specimen/{spec['id']}"


def test_spm_17_falls_back_to_obr_7() -> None:
    ctx = mapped(message("ORU^R01", OBR, VIAB, "SPM|1|S1||BLD"))
    coll = of_type(ctx, "Specimen")[0]["collection"]
    assert coll["collectedDateTime"] == "2026-11-20T10:00:00+01:00"
