"""Datatype converters: DTM/TM, NM, SN, CWE, units, identifiers (examples + properties)."""

from __future__ import annotations

import re
from datetime import datetime, timedelta, timezone

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gateway.adapters.site import Coding, Site, UnitMapping
from gateway.errors import Location, MappingError
from gateway.hl7.parser import Composite, Encoding
from gateway.mapping import datatypes as dt

SITE = Site(id="hpg23", name="HPG23", kind="hospital", facilities=["HPG23"])
AT = Location("OBX", 3, 14)
ENC = Encoding()


def comp(text: str) -> Composite:
    return Composite(text, ENC)


@pytest.mark.parametrize(("value", "expected"), [
    ("2026", "2026"),
    ("202611", "2026-11"),
    ("20261127", "2026-11-27"),
    ("20261127-0500", "2026-11-27"),  # FHIR dates have no zone
    ("2026112710", "2026-11-27T10:00:00+01:00"),
    ("202611271030", "2026-11-27T10:30:00+01:00"),
    ("20261127103015", "2026-11-27T10:30:15+01:00"),
    ("20260701103015", "2026-07-01T10:30:15+02:00"),  # summer time in Europe/Rome
    ("20261127103015.1234+0530", "2026-11-27T10:30:15.1234+05:30"),
    ("202611271030-0000", "2026-11-27T10:30:00-00:00"),
])
def test_dtm_keeps_precision_and_zone(value: str, expected: str) -> None:
    assert dt.dtm_to_fhir(value, "Europe/Rome", AT) == expected


@pytest.mark.parametrize("value", ["20261345", "2026112", "2026-11-27", "20261127T1030",
                                   "220241021055726", "202611271060", "abc", ""])
def test_an_invalid_dtm_is_a_mapping_error_at_its_position(value: str) -> None:
    with pytest.raises(MappingError) as info:
        dt.dtm_to_fhir(value, "Europe/Rome", AT)
    assert info.value.ack_code == "AE"
    assert str(info.value.location) == "OBX-14"
    assert value not in str(info.value) or not value


@given(st.datetimes(min_value=datetime(1900, 1, 1), max_value=datetime(2100, 12, 31)),
       st.sampled_from([4, 6, 8, 10, 12, 14]),
       st.integers(min_value=-12 * 60, max_value=14 * 60))
def test_dtm_round_trips_its_precision_and_instant(moment: datetime, digits: int,
                                                   minutes: int) -> None:
    minutes -= minutes % 15
    sign = "+" if minutes >= 0 else "-"
    offset = f"{sign}{abs(minutes) // 60:02d}{abs(minutes) % 60:02d}"
    text = moment.strftime("%Y%m%d%H%M%S")[:digits]
    out = dt.dtm_to_fhir(text + offset, "Europe/Rome", AT)
    if digits <= 8:
        assert out == "-".join(x for x in (text[:4], text[4:6], text[6:8]) if x)
        return
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d[+-]\d\d:\d\d", out)
    parsed = datetime.fromisoformat(out)
    padded = (text + "0000")[:14]
    local = datetime.strptime(padded, "%Y%m%d%H%M%S").replace(
        tzinfo=timezone(timedelta(minutes=minutes)))
    assert parsed == local


def test_a_time_without_zone_gets_the_site_zone() -> None:
    assert dt.dtm_to_fhir("202611271030", "America/New_York", AT).endswith("-05:00")


@pytest.mark.parametrize(("value", "expected"), [
    ("1030", "10:30:00"), ("103015", "10:30:15"), ("103015.25", "10:30:15.25"),
    ("10", "10:00:00"), ("223100.0000", "22:31:00.0000"), ("1030+0100", "10:30:00")])
def test_tm_becomes_a_fhir_time(value: str, expected: str) -> None:
    assert dt.tm_to_fhir(value, AT) == expected


@pytest.mark.parametrize(("value", "expected"), [
    ("5", 5), ("1.50", 1.5), ("007", 7), ("-.5", -0.5), ("+3", 3), (" 12.0 ", 12.0)])
def test_nm_becomes_a_json_number(value: str, expected: float) -> None:
    out = dt.nm_to_decimal(value, AT)
    assert out == expected and type(out) is type(expected)


@pytest.mark.parametrize("value", ["abc", "1,5", "1.2.3", "", "5 mg", ">5"])
def test_a_non_numeric_nm_is_a_mapping_error(value: str) -> None:
    with pytest.raises(MappingError):
        dt.nm_to_decimal(value, Location("OBX", 2, 5))


@given(st.decimals(allow_nan=False, allow_infinity=False, places=3,
                   min_value=-10**9, max_value=10**9))
def test_nm_keeps_the_numeric_value(value: object) -> None:
    text = format(value, "f")
    assert dt.nm_to_decimal(text, AT) == float(text)


UNIT = {"unit": "mg/L", "system": dt.t.UCUM, "code": "mg/L"}


@pytest.mark.parametrize(("sn", "key", "value"), [
    (">^10", "valueQuantity", {"value": 10, "comparator": ">", **UNIT}),
    ("<=^0.5", "valueQuantity", {"value": 0.5, "comparator": "<=", **UNIT}),
    ("=^7", "valueQuantity", {"value": 7, **UNIT}),
    ("^7", "valueQuantity", {"value": 7, **UNIT}),
    ("^2^-^5", "valueRange", {"low": {"value": 2, **UNIT}, "high": {"value": 5, **UNIT}}),
    # SN-1 "-" is no comparator: SN-3 "-" still makes a Range (the caller reports SN-1)
    ("-^1^-^3", "valueRange", {"low": {"value": 1, **UNIT}, "high": {"value": 3, **UNIT}}),
    (">^1^-^3", "valueString", ">1-3"),
    ("^1^:^128", "valueRatio", {"numerator": {"value": 1}, "denominator": {"value": 128}}),
    ("^1^/^2", "valueRatio", {"numerator": {"value": 1}, "denominator": {"value": 2}}),
    ("^2^+", "valueString", "2+"),
    ("<>^5", "valueString", "<>5"),
])
def test_sn_becomes_quantity_range_ratio_or_string(sn: str, key: str, value: object) -> None:
    assert dt.sn_to_value(comp(sn), UNIT, AT) == (key, value)


@given(st.sampled_from(["<", ">", "<=", ">=", ""]), st.integers(0, 10**6),
       st.integers(0, 10**6))
def test_sn_comparators_and_ranges_parse(comparator: str, a: int, b: int) -> None:
    key, value = dt.sn_to_value(comp(f"{comparator}^{a}"), {}, AT)
    assert key == "valueQuantity" and value["value"] == a
    assert value.get("comparator") == (comparator or None)
    key, value = dt.sn_to_value(comp(f"^{a}^-^{b}"), {}, AT)
    assert key == "valueRange" and (value["low"]["value"], value["high"]["value"]) == (a, b)


def test_cwe_maps_both_triplets_and_named_systems() -> None:
    cc = dt.cwe_to_codeable_concept(
        comp("1988-5^C reactive protein^LN^PCR^Proteina C reattiva^L^2.77^^CRP text"), SITE)
    assert cc == {"coding": [
        {"system": "http://loinc.org", "version": "2.77", "code": "1988-5",
         "display": "C reactive protein"},
        {"system": "urn:plagencell:site:hpg23:codes", "code": "PCR",
         "display": "Proteina C reattiva"}], "text": "CRP text"}


@pytest.mark.parametrize(("name", "system"), [
    ("SCT", "http://snomed.info/sct"), ("SNM", "http://snomed.info/sct"),
    ("UCUM", "http://unitsofmeasure.org"),
    ("HL70487", "http://terminology.hl7.org/CodeSystem/v2-0487"),
    ("99LAB", "urn:plagencell:site:hpg23:codes"), ("L", "urn:plagencell:site:hpg23:codes"),
    ("", "urn:plagencell:site:hpg23:codes"),
    ("METRIC X", "urn:plagencell:site:hpg23:codes:METRIC%20X")])
def test_coding_system_names_become_uris(name: str, system: str) -> None:
    assert dt.coding_system(name, "hpg23") == system


def test_the_site_code_map_puts_the_standard_coding_first_and_keeps_the_local_one() -> None:
    site = SITE.model_copy(update={"code_map": {
        "L|CD19CAR": Coding(system="http://loinc.org", code="99999-9", display="CAR+ cells")}})
    cc = dt.cwe_to_codeable_concept(comp("CD19CAR^CAR-T CD19^L"), site, code_map=True)
    assert cc is not None
    assert [c["system"] for c in cc["coding"]] == ["http://loinc.org",
                                                   "urn:plagencell:site:hpg23:codes"]
    assert dt.has_standard_coding(cc)


def test_units_are_ucum_from_the_system_the_table_or_the_site_map() -> None:
    assert dt.units(comp("mg/dL"), SITE) == {"unit": "mg/dL", "system": dt.t.UCUM,
                                             "code": "mg/dL"}
    assert dt.units(comp("10\\S\\3/uL"), SITE)["code"] == "10*3/uL"  # 10^3/uL, escaped
    assert dt.units(comp("xyz^per thing^UCUM"), SITE)["code"] == "xyz"
    assert dt.units(comp("beats/min"), SITE) == {"unit": "beats/min"}
    site = SITE.model_copy(update={"unit_map": {"cell/mcL": UnitMapping(code="{cells}/uL")}})
    assert dt.units(comp("cell/mcL"), site)["code"] == "{cells}/uL"


def test_cq_becomes_a_quantity() -> None:
    assert dt.cq_to_quantity(comp("40^mL&milliliter&UCUM"), SITE, AT) == {
        "value": 40, "unit": "milliliter", "system": dt.t.UCUM, "code": "mL"}


def test_identifiers_are_hashed_and_systems_come_from_hd() -> None:
    def pseudonym(*parts: str) -> str:
        return "H(" + "|".join(parts) + ")"
    ident = dt.ei_to_identifier(comp("ORD1^HPG23-CPOE"), "hpg23", pseudonym, "order", "PLAC")
    assert ident is not None and ident["system"] == "urn:plagencell:hashed:order"
    assert ident["value"] == "H(order|urn:plagencell:site:hpg23:ns:HPG23-CPOE|ORD1)"
    assert dt.hd_to_system("", "2.16.840.1.113883", "ISO", "x") == "urn:oid:2.16.840.1.113883"
    cx = dt.cx_to_identifier(comp("123^^^HOSP&1.2.3&ISO^MR"), "x")
    assert cx == {"system": "urn:oid:1.2.3", "value": "123",
                  "type": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v2-0203",
                                       "code": "MR"}]}}


def test_memoised_codeable_concepts_and_units_are_copies_never_shared() -> None:
    first = dt.cwe_to_codeable_concept(comp("PCR^Proteina C^L"), SITE, code_map=True)
    assert first is not None
    first["coding"][0]["code"] = "changed"
    first["text"] = "changed"
    again = dt.cwe_to_codeable_concept(comp("PCR^Proteina C^L"), SITE, code_map=True)
    assert again == {"coding": [{"system": "urn:plagencell:site:hpg23:codes", "code": "PCR",
                                 "display": "Proteina C"}], "text": "Proteina C"}
    unit = dt.units(comp("mg/L^mg/L^UCUM"), SITE)
    unit["code"] = "changed"
    assert dt.units(comp("mg/L^mg/L^UCUM"), SITE)["code"] == "mg/L"


def test_a_reloaded_site_with_another_code_map_is_not_served_from_the_old_memo() -> None:
    before = dt.cwe_to_codeable_concept(comp("PCR^Proteina C^L"), SITE, code_map=True)
    reloaded = SITE.model_copy(update={"code_map": {"PCR": Coding(
        system="http://loinc.org", code="1988-5")}})
    after = dt.cwe_to_codeable_concept(comp("PCR^Proteina C^L"), reloaded, code_map=True)
    assert before is not None and after is not None
    assert [c["code"] for c in before["coding"]] == ["PCR"]
    assert [c["code"] for c in after["coding"]] == ["1988-5", "PCR"]
