"""ResearchStudy and ResearchSubject: CRM^C01–C08 (CSR, CSP) and CTI wherever it appears.

Study identity is network-wide: a study's id is the hash of its canonical identifier, so the
same trial sent by two sites is one ResearchStudy. Sites may send local codes; their
``study_aliases`` and the studies file's ``aliases`` resolve them. A ResearchSubject is one
per (study, patient), network-wide too.

CRM events (HL7 v2.5 chapter 7.6) → ResearchSubject.status (R4 research-subject-status):

    C01 register                 on-study (CSR-10 ineligible/candidate/screening/pending win)
    C02 cancel registration      withdrawn
    C03 correct registration     as C01; off-study when CSR-15 (date ended study) is valued
    C04 off study                off-study, period.end = CSR-15, reason CSR-16
    C05 enters a phase (CSP)     from the phase (CSP-1): intervention / observation /
                                 screening; a phase the table does not know: observation
    C06 cancel phase entry       on-study (back to the registration state)
    C07 correct phase            as C05
    C08 off a phase              follow-up
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence

from gateway.adapters.site import Study
from gateway.errors import Location, MappingError
from gateway.hl7.parser import Composite, Segment
from gateway.mapping import datatypes as dt
from gateway.mapping.context import STUDY_EXTENSION, MappingContext, Resource, resource_id
from gateway.mapping.manifest import occurrence

EUCT_SYSTEM = "https://euclinicaltrials.eu/clinicalTrialId"
NCT_SYSTEM = "https://clinicaltrials.gov/nctid"
EUCT_NAMESPACES = frozenset({"EUCT", "EU-CT", "CTIS"})
NCT_NAMESPACES = frozenset({"NCT", "CT.GOV", "CLINICALTRIALS.GOV"})
EUCT_PATTERN = re.compile(r"^\d{4}-\d{6}-\d{2}-\d{2}$")
NCT_PATTERN = re.compile(r"^NCT\d{8}$")
PHASE_SYSTEM = "http://terminology.hl7.org/CodeSystem/research-study-phase"
SUBJECT_STATE = "http://terminology.hl7.org/CodeSystem/research-subject-state"
# R5 ResearchSubject.progress as an R4 cross-version extension: the reason and date a
# subject's state changed (R4 has no element for CSR-16 "reason ended study").
PROGRESS_EXTENSION = "http://hl7.org/fhir/5.0/StructureDefinition/extension-ResearchSubject.progress"
NETWORK = "network"  # the "site" part of network-wide resource ids
# CSR-10 (patient study eligibility status, user-defined) → status of a registration.
ELIGIBILITY: dict[str, str] = {
    "Y": "on-study", "YES": "on-study", "ELIGIBLE": "on-study", "ELIG": "on-study",
    "N": "ineligible", "NO": "ineligible", "INELIGIBLE": "ineligible", "INELIG": "ineligible",
    "CANDIDATE": "candidate", "POTENTIAL-CANDIDATE": "potential-candidate",
    "SCREENING": "screening", "PENDING": "pending-on-study",
    "PENDING-ON-STUDY": "pending-on-study", "NOT-REGISTERED": "not-registered",
}
# CSP-1 (study phase identifier) words → the subject's status while in that phase.
PHASE_WORDS: dict[str, str] = {
    "SCREEN": "screening", "SCREENING": "screening",
    "TREATMENT": "on-study-intervention", "TREAT": "on-study-intervention",
    "TX": "on-study-intervention", "INTERVENTION": "on-study-intervention",
    "INFUSION": "on-study-intervention", "LYMPHODEPLETION": "on-study-intervention",
    "INDUCTION": "on-study-intervention", "CONSOLIDATION": "on-study-intervention",
    "MAINTENANCE": "on-study-intervention",
    "FOLLOW-UP": "on-study-observation", "FOLLOWUP": "on-study-observation",
    "FOLLOW": "on-study-observation",
    "FU": "on-study-observation", "OBSERVATION": "on-study-observation",
    "MONITORING": "on-study-observation", "OFF-TREATMENT": "on-study-observation",
}
FIXED_STATUS = {"C02": "withdrawn", "C04": "off-study", "C06": "on-study",
                "C08": "follow-up"}


# --- studies -----------------------------------------------------------------------------
def study_index(studies: Iterable[Study]) -> dict[str, Study]:
    """Every identifier value, alias and short id of the studies file → its Study."""
    index: dict[str, Study] = {}
    for study in studies:
        for key in (study.id, *study.aliases, *(i.value for i in study.identifiers)):
            index.setdefault(key.upper(), study)
    return index


def study_identifier(value: str, namespace: str, site_id: str) -> dict[str, str]:
    """EI → the study's identifier: EU CT number, NCT number, or a site-scoped code."""
    ns = namespace.strip().upper()
    if ns in EUCT_NAMESPACES or EUCT_PATTERN.match(value):
        return {"system": EUCT_SYSTEM, "value": value}
    if ns in NCT_NAMESPACES or NCT_PATTERN.match(value.upper()):
        return {"system": NCT_SYSTEM, "value": value.upper()}
    return {"system": f"urn:plagencell:site:{site_id}:study", "value": value}


def study_id(identifier: Mapping[str, str]) -> str:
    return resource_id("ResearchStudy", NETWORK, identifier["system"], identifier["value"])


def map_study(ctx: MappingContext, ei: Composite, where: Location) -> str:
    """The ResearchStudy named by an EI (CSR-1, CTI-1) added to ``ctx``; its id."""
    value = ei.c(1).strip()
    position = f"{where.segment}[{where.sequence}]-{where.field}"
    if not value:
        raise MappingError(f"{position}: sponsor study id is missing", segment=where.segment,
                           sequence=where.sequence, field=where.field, code="101")
    value = ctx.site.study_aliases.get(value, value)
    known: Study | None = ctx.studies.get(value.upper())
    if known is not None:
        return str(ctx.add(known_study(known))["id"])
    identifier = study_identifier(value, ei.c(2), ctx.site.id)
    ctx.warn(position, f"{position}: study not in the network studies file; ResearchStudy "
             "created with status in-review", code="not-found")
    rid = study_id(identifier)
    if ("ResearchStudy", rid) not in ctx.resources:
        ctx.add({"resourceType": "ResearchStudy", "id": rid, "identifier": [identifier],
                 "status": "in-review"})
    return rid


AREA_SYSTEM = "https://plagencell.example.org/fhir/CodeSystem/research-area"
AREAS = {"haematological-neoplasms": "Haematological neoplasms",
         "neurological-disorders": "Neurological and neurodegenerative disorders",
         "kidney-diseases": "Kidney diseases"}
SITE_SYSTEM = "urn:plagencell:site"


def known_study(study: Study) -> Resource:
    """A study of the studies file, complete: identifiers, title, status, phase, the
    network's research area and the study's own conditions, sponsor, and the participating
    sites (``site``: logical references to each site's Location, by site id). The same
    resource whether written at start-up or when data first names the study."""
    identifiers = [{"system": i.system, "value": i.value} for i in study.identifiers]
    out: Resource = {"resourceType": "ResearchStudy", "id": study_id(identifiers[0]),
                     "identifier": identifiers, "title": study.title, "status": study.status}
    if study.phase:
        out["phase"] = {"coding": [{"system": PHASE_SYSTEM, "code": study.phase}]}
    conditions = [_condition(AREA_SYSTEM, study.area, AREAS[study.area])] if study.area else []
    conditions += [_condition(c.system, c.code, c.display) for c in study.conditions]
    if conditions:
        out["condition"] = conditions
    if study.sponsor:
        out["sponsor"] = {"display": study.sponsor}
    if study.sites:
        out["site"] = [{"type": "Location", "identifier": {"system": SITE_SYSTEM, "value": s},
                        "display": s} for s in study.sites]
    return out


def _condition(system: str | None, code: str | None, display: str) -> Resource:
    if system and code:
        return {"coding": [{"system": system, "code": code, "display": display}],
                "text": display}
    return {"text": display}


# --- subjects ----------------------------------------------------------------------------
def subject_id(study: str, patient: str) -> str:
    return resource_id("ResearchSubject", NETWORK, study, patient)


def subject_base(study: str, patient: str, status: str) -> Resource:
    return {"resourceType": "ResearchSubject", "id": subject_id(study, patient),
            "status": status, "study": {"reference": f"ResearchStudy/{study}"},
            "individual": {"reference": f"Patient/{patient}"}}


def map_registration(ctx: MappingContext, csr: Segment, patient: str,
                     csp: Segment | None = None) -> str:
    """CRM^C01–C08: the CSR (and CSP) → ResearchStudy + ResearchSubject; the subject id."""
    seq = occurrence(ctx.message, csr)
    study = map_study(ctx, csr.first(1), Location("CSR", seq, 1))
    event = ctx.message.trigger_event.upper()
    subject = subject_base(study, patient, registration_status(event, csr, csp))
    _subject_identifier(ctx, csr, seq, subject, study)
    _period(ctx, csr, seq, subject)
    arm = csr.first(12)
    if arm.c(1) or arm.c(2):
        subject["assignedArm"] = arm.c(1) or arm.c(2)
    _end_reason(ctx, csr, seq, subject)
    for fld in (2, 3, 5, 7, 8, 9, 11, 13, 14):
        if csr.has(fld):
            ctx.info(f"CSR[{seq}]-{fld}", f"CSR-{fld}: not mapped")
    ctx.add(subject)
    ctx.create_only.discard(("ResearchSubject", subject["id"]))
    return str(subject["id"])


def registration_status(event: str, csr: Segment, csp: Segment | None) -> str:
    if event in FIXED_STATUS:
        return FIXED_STATUS[event]
    if event in ("C05", "C07"):
        return phase_status(csp)
    if event == "C03" and csr.has(15):
        return "off-study"
    eligibility = csr.first(10)
    for word in (eligibility.c(1), eligibility.c(2)):
        status = ELIGIBILITY.get(word.strip().upper().replace(" ", "-"))
        if status:
            return status
    return "on-study"


def phase_status(csp: Segment | None) -> str:
    """CSP-1 phase code or text → status while in the phase; unknown → on-study-observation."""
    if csp is not None:
        phase = csp.first(1)
        for text in (phase.c(1), phase.c(2)):
            for word in re.split(r"[\s_/]+", text.upper()):
                if word in PHASE_WORDS:
                    return PHASE_WORDS[word]
    return "on-study-observation"


def _subject_identifier(ctx: MappingContext, csr: Segment, seq: int, subject: Resource,
                        study: str) -> None:
    """CSR-4 sponsor patient id: the trial's subject number, kept (it is the sponsor's
    pseudonym, needed to reconcile with the EDC) unless it repeats a PID-3 identifier,
    which would put a hospital number in clear: then it is hashed."""
    cx = csr.first(4)
    value = cx.c(1).strip()
    if not value:
        return
    system = f"urn:plagencell:study:{study}:subject"
    hospital_ids = {r.c(1).strip() for pid in ctx.message.all("PID") for r in pid.reps(3)}
    if value in hospital_ids:
        ctx.warn(f"CSR[{seq}]-4", "CSR-4 repeats a PID-3 identifier: hashed, not sent in clear")
        value, system = ctx.pseudonym("subject", system, value), "urn:plagencell:hashed:subject"
    subject["identifier"] = [{"system": system, "value": value}]


def _period(ctx: MappingContext, csr: Segment, seq: int, subject: Resource) -> None:
    period = {}
    for fld, key in ((6, "start"), (15, "end")):
        when = dt.ts_to_fhir(csr.first(fld), ctx.site.timezone, Location("CSR", seq, fld))
        if when:
            period[key] = when
    if period:
        subject["period"] = period


def _end_reason(ctx: MappingContext, csr: Segment, seq: int, subject: Resource) -> None:
    """CSR-16 reason ended study → R5 ResearchSubject.progress (cross-version extension)."""
    reason = dt.cwe_to_codeable_concept(csr.first(16), ctx.site)
    if not reason:
        return
    parts: list[Resource] = [
        {"url": "subjectState", "valueCodeableConcept": {"coding": [
            {"system": SUBJECT_STATE, "code": subject["status"]}]}},
        {"url": "reason", "valueCodeableConcept": reason}]
    end = subject.get("period", {}).get("end")
    if end:
        parts.append({"url": "endDate", "valueDateTime": end})
    subject["extension"] = [{"url": PROGRESS_EXTENSION, "extension": parts}]


# --- CTI: results that belong to a study -------------------------------------------------
def map_trials(ctx: MappingContext, patient: str | None) -> list[str]:
    """Every CTI → its ResearchStudy, and (with a patient) a ResearchSubject that the store
    creates only when it has none: an implicit ``on-study`` must never overwrite the status
    a CRM message set. Returns the study ids, in order, without repeats."""
    studies: list[str] = []
    for seq, cti in enumerate(ctx.message.all("CTI"), start=1):
        study = map_study(ctx, cti.first(1), Location("CTI", seq, 1))
        for fld in (2, 3):
            if cti.has(fld):
                ctx.info(f"CTI[{seq}]-{fld}", f"CTI-{fld}: not mapped")
        if study in studies:
            continue
        studies.append(study)
        if patient is not None:
            _implicit_subject(ctx, study, patient)
    return studies


def _implicit_subject(ctx: MappingContext, study: str, patient: str) -> None:
    key = ("ResearchSubject", subject_id(study, patient))
    if key not in ctx.resources:
        ctx.add(subject_base(study, patient, "on-study"))
        ctx.create_only.add(key)


def tag_with_studies(resources: Iterable[Resource], studies: Sequence[str]) -> None:
    """Observations and Specimens of a message with CTI carry workflow-researchStudy."""
    wanted = [{"url": STUDY_EXTENSION, "valueReference": {"reference": f"ResearchStudy/{s}"}}
              for s in studies]
    for resource in resources:
        if resource["resourceType"] not in ("Observation", "Specimen"):
            continue
        present = resource.setdefault("extension", [])
        present.extend(e for e in wanted if e not in present)


