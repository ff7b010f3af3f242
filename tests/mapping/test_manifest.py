"""The manifest: which messages are accepted, what each produces, AR/AE answers with their
locations, ADT merges, Provenance, Organization, order and validity of the output."""

from __future__ import annotations

from pathlib import Path

import pytest

from gateway.adapters.site import Site
from gateway.errors import InboundError, MappingError, UnsupportedMessage
from gateway.hl7.parser import parse, split_messages
from gateway.mapping import map_message
from gateway.mapping.context import MAPPING_VERSION
from gateway.mapping.manifest import MANIFEST

from .support import KEY, RECEIVED, assert_valid, by_type, convert, dumps, hl7, one

PID = "PID|1||MRN12345^^^HSR^MR||ROSSI^MARIO||19850110|M"


def msh(type_: str, version: str = "2.5.1", control: str = "M1", facility: str = "HSR") -> str:
    return f"MSH|^~\\&|APP|{facility}|GW|PLAGENCELL|20260101120000||{type_}|{control}|P|{version}"


ORU = hl7(msh("ORU^R01^ORU_R01"), PID, "ORC|RE||ORD-1^HSR",
          "OBR|1||ORD-1^HSR|718-7^Hemoglobin^LN|||20260101100000",
          "OBX|1|NM|718-7^Hemoglobin^LN||13.2|g/dL^g/dL^UCUM|12-16||||F")


def rejected(text: str, site: Site | None = None) -> InboundError:
    with pytest.raises(InboundError) as info:
        if site is None:
            convert(text)
        else:
            map_message(parse(text), site, pseudonym_key=KEY, received=RECEIVED)
    return info.value


# --- what is refused -------------------------------------------------------------------
def test_an_unsupported_message_type_is_refused_with_ar_200_at_msh_9() -> None:
    err = rejected(hl7(msh("SIU^S12^SIU_S12"), PID))
    assert isinstance(err, UnsupportedMessage)
    assert (err.ack_code, err.err_code, str(err.location)) == ("AR", "200", "MSH-9.1")


def test_an_unsupported_trigger_event_is_refused_with_ar_201_at_msh_9_2() -> None:
    err = rejected(hl7(msh("ADT^A14^ADT_A05"), PID))  # pending admit: not a patient update
    assert (err.ack_code, err.err_code, str(err.location)) == ("AR", "201", "MSH-9.2")


@pytest.mark.parametrize("version", ["2.2", "2.9", "3.0", ""])
def test_versions_outside_2_3_to_2_8_are_refused_with_ar_203_at_msh_12(version: str) -> None:
    err = rejected(hl7(msh("ORU^R01", version), PID))
    assert (err.ack_code, err.err_code, str(err.location)) == ("AR", "203", "MSH-12.1")


@pytest.mark.parametrize("version", ["2.3", "2.3.1", "2.4", "2.5", "2.6", "2.7.1", "2.8"])
def test_versions_2_3_to_2_8_are_accepted(version: str) -> None:
    assert one(convert(ORU.replace("|P|2.5.1", f"|P|{version}")), "Observation")


def test_a_site_that_lists_its_message_types_refuses_the_others() -> None:
    site = Site(id="hsr", name="HSR", kind="hospital", facilities=["HSR"],
                message_types=["ORU^R01", "ADT^A08"])
    assert rejected(hl7(msh("CRM^C01"), PID), site).err_code == "200"
    assert rejected(hl7(msh("ADT^A01"), PID), site).err_code == "201"
    result = map_message(parse(ORU), site, pseudonym_key=KEY, received=RECEIVED)
    assert one(result, "Observation")


def test_an_oru_without_pid_3_is_an_ae_101_at_pid_3() -> None:
    err = rejected(ORU.replace(PID, "PID|1||||ROSSI^MARIO||19850110|M"))
    assert isinstance(err, MappingError)
    assert (err.ack_code, err.err_code, str(err.location)) == ("AE", "101", "PID-3")
    assert "ROSSI" not in str(err)


def test_an_obx_without_obx_3_is_reported_at_obx_3_and_the_good_results_are_kept() -> None:
    # Not an AE for the whole message: that would lose the good results (see docs/mapping.md).
    result = convert(ORU + "OBX|2|NM|||5.1|mmol/L|||||F\r")
    assert len(by_type(result, "Observation")) == 1
    assert [(e.severity, e.location) for e in result.report if e.severity == "error"] == [
        ("error", "OBX[2]-3")]


def test_an_oru_without_pid_is_an_ae_100_at_pid() -> None:
    err = rejected(ORU.replace(PID + "\r", ""))
    assert (err.ack_code, err.err_code, err.location.segment if err.location else None) == (
        "AE", "100", "PID")


def test_two_patients_in_one_message_are_refused_not_guessed() -> None:
    err = rejected(ORU + "PID|2||MRN999^^^HSR^MR||B^C\r")
    assert err.err_code == "100" and err.location is not None
    assert err.location.sequence == 2


def test_a_crm_without_csr_is_an_ae_at_csr() -> None:
    err = rejected(hl7(msh("CRM^C01^CRM_C01"), PID))
    assert (err.ack_code, err.location.segment if err.location else None) == ("AE", "CSR")


# --- what each message type produces ---------------------------------------------------
@pytest.mark.parametrize("event", ["A01", "A04", "A08", "A28", "A31"])
def test_patient_updates_produce_the_patient_only(event: str) -> None:
    result = convert(hl7(msh(f"ADT^{event}^ADT_A01"), f"EVN|{event}", PID, "PV1|1|I"))
    kinds = [r["resourceType"] for r in result.resources]
    assert kinds == ["Organization", "Patient", "Provenance"]
    assert_valid(result.resources)


def test_every_manifest_entry_is_a_supported_type() -> None:
    assert ("ORU", "R01") in MANIFEST and ("ADT", "A40") in MANIFEST
    assert {e for c, e in MANIFEST if c == "CRM"} == {f"C0{n}" for n in range(1, 9)}
    assert {e for c, e in MANIFEST if c == "OUL"} == {"R22", "R23", "R24"}


def test_resources_come_in_the_documented_order_with_provenance_last() -> None:
    result = convert(ORU.replace("|F\r", "|F\rCTI|CARTLBCL\r"))
    kinds = [r["resourceType"] for r in result.resources]
    order = ["Organization", "Patient", "ResearchStudy", "ResearchSubject", "Specimen",
             "Observation", "Provenance"]
    assert kinds == sorted(kinds, key=order.index)
    assert kinds[0] == "Organization" and kinds[-1] == "Provenance"


def test_the_same_message_twice_maps_to_identical_bytes() -> None:
    assert dumps(convert(ORU).resources) == dumps(convert(ORU).resources)


def test_unmapped_segments_are_reported_by_position_without_values() -> None:
    text = ORU.replace(PID, PID + "\rNK1|1|ROSSI^ANNA|SPO\rZXY|secret-value")
    report = convert(text).report
    where = {e.location: e for e in report}
    assert "NK1[1]" in where and "ZXY[1]" in where
    assert all("ROSSI" not in e.diagnostics and "secret" not in e.diagnostics for e in report)


# --- ADT^A40 merge ---------------------------------------------------------------------
MERGE = hl7(msh("ADT^A40^ADT_A39", control="MRG1"), "EVN|A40",
            "PID|1||MRN-NEW^^^HSR^MR||ROSSI^MARIO||19850110|M",
            "MRG|MRN-OLD^^^HSR^MR")


def test_a_merge_retires_the_prior_patient_and_links_it_to_the_survivor() -> None:
    links: dict[str, str] = {}
    prior = one(convert(hl7(msh("ADT^A04"), "PID|1||MRN-OLD^^^HSR^MR||A^B||1985|M"),
                        links=links), "Patient")
    result = convert(MERGE, links=links)
    patients = {p["id"]: p for p in by_type(result, "Patient")}
    assert patients[prior["id"]]["active"] is False
    survivor_id = next(i for i in patients if i != prior["id"])
    assert patients[prior["id"]]["link"] == [
        {"other": {"reference": f"Patient/{survivor_id}"}, "type": "replaced-by"}]
    assert patients[survivor_id]["link"] == [
        {"other": {"reference": f"Patient/{prior['id']}"}, "type": "replaces"}]
    assert_valid(result.resources)
    # the old MRN now resolves to the survivor
    later = convert(ORU.replace("MRN12345", "MRN-OLD"), links=links)
    assert one(later, "Patient")["id"] == survivor_id


def test_a_merge_without_mrg_is_an_ae_at_mrg() -> None:
    err = rejected(hl7(msh("ADT^A40"), PID))
    assert err.location is not None and err.location.segment == "MRG"


# --- Provenance and Organization -------------------------------------------------------
def test_provenance_names_every_target_the_site_and_the_mapping_version() -> None:
    result = convert(ORU)
    prov = one(result, "Provenance")
    targets = [t["reference"] for t in prov["target"]]
    assert targets == [f"{r['resourceType']}/{r['id']}" for r in result.resources[:-1]]
    org = one(result, "Organization")
    assert prov["agent"][0]["who"] == {"reference": f"Organization/{org['id']}"}
    assert prov["recorded"] == RECEIVED
    assert prov["policy"] == [f"urn:plagencell:mapping:{MAPPING_VERSION}"]
    entity = prov["entity"][0]
    assert entity["role"] == "source" and entity["what"]["identifier"]["value"] != "M1"
    assert_valid([prov, org])


def test_a_resent_message_keeps_its_provenance_id() -> None:
    first = one(convert(ORU), "Provenance")
    again = one(convert(ORU, received="2026-11-28T08:00:00Z"), "Provenance")
    other = one(convert(ORU.replace("|M1|", "|M2|")), "Provenance")
    assert first["id"] == again["id"] != other["id"]


def test_the_organization_says_what_kind_of_site_it_is() -> None:
    hospital = one(convert(ORU), "Organization")
    factory = one(convert(ORU.replace("|HSR|GW", "|CF-CALORI|GW")), "Organization")
    assert hospital["identifier"] == [{"system": "urn:plagencell:site", "value": "hsr"}]
    assert hospital["type"][0]["coding"][0]["code"] == "prov"
    assert factory["type"][0]["coding"][0]["code"] == "other"
    assert factory["name"] == "Cell Factory Franco Calori"


# --- the corpus ------------------------------------------------------------------------
MINE = ("Organization", "Patient", "ResearchStudy", "ResearchSubject", "Provenance")


def test_every_corpus_message_maps_or_is_refused_and_what_it_makes_validates(
        corpus: Path) -> None:
    """Every corpus message either maps or raises an InboundError (never anything else);
    the Patient, study, subject, Organization and Provenance resources all validate (the
    results' own resources are checked by the results tests)."""
    mapped = 0
    for path in sorted(corpus.rglob("*")):
        if path.is_dir() or path.suffix.lower() in (".json", ".fhir", ".csv", ".tsv", ".md",
                                                    ".xml", ".txt") or "LICENSE" in path.name:
            continue
        for text in split_messages(path.read_bytes()):
            try:
                result = convert(text, "hsr")
            except InboundError:
                continue
            assert_valid(r for r in result.resources if r["resourceType"] in MINE)
            mapped += 1
    assert mapped > 50
