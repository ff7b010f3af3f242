"""Research scenarios: enrolment, off-study, phases, CAR-T release from a cell factory,
post-infusion monitoring at a hospital, a corrected result, study identifiers."""

from __future__ import annotations

import pytest

from gateway.adapters.loader import Network
from gateway.adapters.site import Site
from gateway.hl7.parser import parse
from gateway.mapping import map_message
from gateway.mapping.context import STUDY_EXTENSION
from gateway.mapping.research import (
    EUCT_SYSTEM,
    NCT_SYSTEM,
    PROGRESS_EXTENSION,
    study_id,
    study_identifier,
)

from .support import KEY, RECEIVED, assert_valid, by_type, convert, hl7, network, one

CF = "RSSMRA85T10A562S"  # a codice fiscale (the textbook example), shape-valid
# The patient at San Raffaele: MRN + codice fiscale (PID-3 repeats); PID-5/7/8/11 present.
PID_HSR = (f"PID|1||MRN12345^^^HSR^MR~{CF}^^^MEF^NNITA||ROSSI^MARIO||19850110|M|||"
           "VIA ROMA 1^^MILANO^MI^20100^IT")
CART_LBCL = "2024-510233-27-00"  # the studies file's cart-lymphoma (EU CT number)


def crm(event: str, csr: str, *extra: str, control: str = "CRM0001") -> str:
    """A CRM message from San Raffaele's trial system: MSH-9 = CRM^<event>."""
    return hl7(f"MSH|^~\\&|CTMS|HSR|GW|PLAGENCELL|20260310091500||CRM^{event}^CRM_C01|"
               f"{control}|P|2.5.1", PID_HSR, "PV1|1|O", csr, *extra)


# CSR-1 study (local alias CARTLBCL), CSR-4 sponsor subject number, CSR-6 registered on,
# CSR-10 eligibility Y, CSR-12 randomised arm.
CSR_REGISTER = ("CSR|CARTLBCL^HSR|||SUBJ-0042^^^SPONSOR||20260310091500||||Y||"
                "ARM-A^Axi-cel arm^L")
# ... plus CSR-15 ended study on, CSR-16 reason ended study.
CSR_OFF = CSR_REGISTER + "|||20260901120000|PD^Progressive disease^L"


def test_enrolment_registers_the_patient_on_the_known_study() -> None:
    result = convert(crm("C01", CSR_REGISTER))
    study = one(result, "ResearchStudy")
    subject = one(result, "ResearchSubject")
    patient = one(result, "Patient")
    assert {"system": EUCT_SYSTEM, "value": CART_LBCL} in study["identifier"]
    assert study["status"] == "active" and study["title"].startswith("Academic anti-CD19")
    assert study["phase"]["coding"][0]["code"] == "phase-2"
    assert subject["status"] == "on-study"
    assert subject["period"] == {"start": "2026-03-10T09:15:00+01:00"}
    assert subject["assignedArm"] == "ARM-A"
    assert subject["identifier"][0]["value"] == "SUBJ-0042"  # the sponsor's subject number
    assert subject["study"] == {"reference": f"ResearchStudy/{study['id']}"}
    assert subject["individual"] == {"reference": f"Patient/{patient['id']}"}
    assert not result.create_only  # an explicit registration always writes
    assert_valid(result.resources)


def test_off_study_ends_the_period_and_keeps_the_reason() -> None:
    subject = one(convert(crm("C04", CSR_OFF)), "ResearchSubject")
    assert subject["status"] == "off-study"
    assert subject["period"]["end"] == "2026-09-01T12:00:00+02:00"  # CEST in September
    progress = next(e for e in subject["extension"] if e["url"] == PROGRESS_EXTENSION)
    parts = {p["url"]: p for p in progress["extension"]}
    assert parts["reason"]["valueCodeableConcept"]["coding"][0]["code"] == "PD"
    assert parts["subjectState"]["valueCodeableConcept"]["coding"][0]["code"] == "off-study"
    assert parts["endDate"]["valueDateTime"] == subject["period"]["end"]
    assert_valid([subject])


def test_enrolment_and_off_study_update_the_same_research_subject() -> None:
    enrolled = one(convert(crm("C01", CSR_REGISTER)), "ResearchSubject")
    ended = one(convert(crm("C04", CSR_OFF, control="CRM0002")), "ResearchSubject")
    assert enrolled["id"] == ended["id"]


@pytest.mark.parametrize(("event", "extra", "status"), [
    ("C02", (), "withdrawn"),  # registration cancelled
    ("C03", (), "on-study"),  # registration corrected
    ("C05", ("CSP|FU^Follow-up^L|20260601",), "on-study-observation"),  # enters follow-up
    ("C05", ("CSP|TX^Treatment^L|20260401",), "on-study-intervention"),  # enters treatment
    ("C05", ("CSP|P3^Infusion day^L|20260601",), "on-study-intervention"),  # by the text
    ("C05", ("CSP|P7^Phase seven^L|20260401",), "on-study-observation"),  # unknown phase
    ("C06", (), "on-study"),  # phase entry cancelled: back to registered
    ("C07", ("CSP|SCREEN^Screening^L|20260301",), "screening"),  # phase corrected
    ("C08", ("CSP|TX^Treatment^L|20260401|20260501",), "follow-up"),  # off a phase
])
def test_each_crm_event_sets_the_subject_status(event: str, extra: tuple[str, ...],
                                                status: str) -> None:
    result = convert(crm(event, CSR_REGISTER, *extra))
    assert one(result, "ResearchSubject")["status"] == status
    assert_valid(result.resources)


def test_csr_10_ineligible_wins_over_registration() -> None:
    csr = CSR_REGISTER.replace("||||Y||", "||||N^Not eligible^L||")
    assert one(convert(crm("C01", csr)), "ResearchSubject")["status"] == "ineligible"


def test_a_sponsor_subject_id_that_repeats_the_mrn_is_hashed() -> None:
    csr = CSR_REGISTER.replace("SUBJ-0042^^^SPONSOR", "MRN12345^^^HSR")
    result = convert(crm("C01", csr))
    subject = one(result, "ResearchSubject")
    assert subject["identifier"][0]["value"] != "MRN12345"
    assert any(e.location == "CSR[1]-4" for e in result.report)


def test_an_unknown_study_is_created_in_review_with_a_warning() -> None:
    csr = CSR_REGISTER.replace("CARTLBCL^HSR", "NCT09999999^CT.GOV")
    result = convert(crm("C01", csr))
    study = one(result, "ResearchStudy")
    assert study["status"] == "in-review"
    assert study["identifier"] == [{"system": NCT_SYSTEM, "value": "NCT09999999"}]
    warning = next(e for e in result.report if e.code == "not-found")
    assert warning.location == "CSR[1]-1" and "NCT0" not in warning.diagnostics


@pytest.mark.parametrize(("value", "namespace", "system"), [
    ("2023-503816-41-00", "", EUCT_SYSTEM),  # pattern alone
    ("X-1", "CTIS", EUCT_SYSTEM),  # namespace alone
    ("X-1", "EU-CT", EUCT_SYSTEM),
    ("nct05252403", "", NCT_SYSTEM),  # pattern, any case
    ("12345", "NCT", NCT_SYSTEM),
    ("LOCAL-7", "HSR", "urn:plagencell:site:hsr:study"),  # anything else: site-scoped
])
def test_study_identifiers_follow_the_eu_ct_and_nct_rules(value: str, namespace: str,
                                                          system: str) -> None:
    assert study_identifier(value, namespace, "hsr")["system"] == system


def test_a_site_alias_resolves_a_local_study_code() -> None:
    net: Network = network()
    site = Site(id="hsr", name="HSR", kind="hospital", facilities=["HSR"],
                study_aliases={"LYMPH-CAR": CART_LBCL})
    msg = parse(crm("C01", CSR_REGISTER.replace("CARTLBCL^HSR", "LYMPH-CAR")))
    result = map_message(msg, site, pseudonym_key=KEY, received=RECEIVED,
                         studies=net.studies)
    study = one(result, "ResearchStudy")
    assert study["id"] == study_id({"system": EUCT_SYSTEM, "value": CART_LBCL})
    assert study["status"] == "active"


# --- results that belong to a study (CTI) ----------------------------------------------
# Cell factory Calori releases a CAR-T product: the release sample (SPM-2, a lab number)
# descends from the manufactured product, ISBT 128 DIN W123426000042 (SPM-3); CTI-1 is the
# local study alias. OBX-11 F.
RELEASE = hl7(
    "MSH|^~\\&|LIMS|CF-CALORI|GW|PLAGENCELL|20260415103000||ORU^R01^ORU_R01|CFC-REL-0001|"
    "P|2.5.1",
    f"PID|1||{CF}^^^MEF^NNITA||ROSSI^MARIO||19850110|M",
    "ORC|RE||REL-778^CF-CALORI",
    "OBR|1||REL-778^CF-CALORI|REL^CAR-T release panel^L|||20260415080000",
    "OBX|1|NM|CD3VIAB^CD3+ viability^L||92.5|%^%^UCUM|>=70||||F|||20260415090000",
    "OBX|2|NM|TRANSD^Transduction efficiency^L||41|%^%^UCUM|>=15||||F|||20260415090000",
    "CTI|CARTLBCL^CF-CALORI",
    "SPM|1|RS-5531&CF-CALORI|W123426000042&ISBT128|CELLPROD^Cell product sample^L"
    "|||||||||||||20260415080000|20260415081500",
)
# San Raffaele's lab monitors the same patient after infusion: MRN + codice fiscale, CTI-1
# the EU CT number itself. OBX-11 F; a corrected resend has OBX-11 C.
MONITORING = hl7(
    "MSH|^~\\&|LAB|HSR|GW|PLAGENCELL|20260520074500||ORU^R01^ORU_R01|HSR-LAB-9001|P|2.5.1",
    PID_HSR,
    "ORC|RE||LAB-99812^HSR",
    "OBR|1||LAB-99812^HSR|CARTMON^CAR-T monitoring^L|||20260520070000",
    "OBX|1|NM|26474-7^Lymphocytes [#/volume] in Blood^LN||0.45|10*3/uL^10*3/uL^UCUM|1.0-4.0"
    "|L|||F|||20260520073000",
    "OBX|2|NM|1988-5^C reactive protein [Mass/volume] in Serum or Plasma^LN||38|mg/L^mg/L^UCUM"
    "|<5|H|||F|||20260520073000",
    f"CTI|{CART_LBCL}^EUCT",
)


def _study_refs(resource: dict[str, object]) -> list[str]:
    return [e["valueReference"]["reference"] for e in resource.get("extension", [])  # type: ignore[attr-defined]
            if e["url"] == STUDY_EXTENSION]


def test_a_cart_release_panel_links_results_and_specimens_to_the_study() -> None:
    result = convert(RELEASE)
    study = one(result, "ResearchStudy")
    assert study["status"] == "active"  # CARTLBCL is the alias of a known study
    observations, specimens = by_type(result, "Observation"), by_type(result, "Specimen")
    assert len(observations) == 2 and specimens
    for resource in observations + specimens:
        assert _study_refs(resource) == [f"ResearchStudy/{study['id']}"]
    sample = next(s for s in specimens if s.get("parent"))
    product = next(s for s in specimens if s is not sample)
    din = {"system": "https://www.isbt128.org/uri/DonationIdentificationNumber",
           "value": "W123426000042"}
    assert din in product["identifier"]
    assert sample["parent"] == [{"reference": f"Specimen/{product['id']}"}]
    assert all(o["specimen"] == {"reference": f"Specimen/{sample['id']}"}
               for o in observations)
    assert_valid(result.resources)


def test_a_cti_creates_the_research_subject_only_when_the_store_has_none() -> None:
    result = convert(RELEASE)
    subject = one(result, "ResearchSubject")
    assert subject["status"] == "on-study"
    # (the SPM-3 parent stub Specimen is create-only too: see gateway/mapping/specimen.py)
    assert {k for k in result.create_only if k[0] == "ResearchSubject"} == {
        ("ResearchSubject", subject["id"])}


def test_the_cell_factory_and_the_hospital_share_study_patient_and_subject() -> None:
    release, monitoring = convert(RELEASE), convert(MONITORING)
    for kind in ("ResearchStudy", "Patient", "ResearchSubject"):
        assert one(release, kind)["id"] == one(monitoring, kind)["id"], kind
    assert one(release, "Organization")["id"] != one(monitoring, "Organization")["id"]
    study = one(monitoring, "ResearchStudy")
    assert all(_study_refs(o) == [f"ResearchStudy/{study['id']}"]
               for o in by_type(monitoring, "Observation"))
    assert_valid(monitoring.resources)


def test_a_corrected_result_updates_the_same_observation() -> None:
    first = by_type(convert(MONITORING), "Observation")
    corrected_text = MONITORING.replace("||0.45|", "||0.54|").replace(
        "|L|||F|||20260520073000", "|L|||C|||20260520073000").replace(
        "HSR-LAB-9001", "HSR-LAB-9002")
    second = by_type(convert(corrected_text), "Observation")
    assert [o["id"] for o in first] == [o["id"] for o in second]
    assert (first[0]["status"], second[0]["status"]) == ("final", "corrected")
    assert second[0]["valueQuantity"]["value"] == 0.54
    assert second[1]["status"] == "final"  # the CRP was not corrected


def test_a_registration_in_the_same_message_wins_over_the_implicit_subject() -> None:
    # A CRM group followed by a CTI (unusual, but "CTI wherever it appears"): one subject,
    # the registration's, written unconditionally.
    result = convert(crm("C04", CSR_OFF, "CTI|CARTLBCL^HSR"))
    subject = one(result, "ResearchSubject")
    assert subject["status"] == "off-study" and not result.create_only
