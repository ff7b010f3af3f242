"""A validated lab-export row → FHIR resources, with the mapping's own rules: the Patient
pseudonym and link table (``gateway.mapping.pseudonym``), hashed specimen numbers and
ISBT 128 DINs in clear (``gateway.mapping.specimen``), the site Organization, the study link
extension. Pure: the caller passes the key, the link lookup and the received time.
"""

from __future__ import annotations

from typing import Any

from gateway.adapters.labexport.rows import INTERPRETATION, LabRow
from gateway.adapters.site import Site
from gateway.hl7.parser import parse
from gateway.mapping import datatypes as dt
from gateway.mapping import pseudonym as ps
from gateway.mapping import tables as t
from gateway.mapping.context import (
    MAPPING_VERSION,
    STUDY_EXTENSION,
    MappingContext,
    Resource,
)
from gateway.mapping.organization import organization, organization_reference
from gateway.mapping.patient import patient_resource
from gateway.mapping.research import known_study, subject_base
from gateway.mapping.specimen import STUB_TAG, din_identifier

LABORATORY = {"coding": [{"system": t.OBSERVATION_CATEGORY, "code": "laboratory",
                          "display": "Laboratory"}]}
INTERPRETATION_SYSTEM = "http://terminology.hl7.org/CodeSystem/v3-ObservationInterpretation"
EXPORT_SYSTEM = "urn:plagencell:lab-export"
EMPTY_PID = parse("MSH|^~\\&|X|X|||2026||ZLE^Z01|x|P|2.5\rPID|1").segments[-1]


def export_context(site: Site, key: bytes, received: str,
                   lookup_link: Any = lambda _k: None) -> MappingContext:
    """A mapping context for rows of a file (the message is a stand-in MSH for the site)."""
    msh = parse(f"MSH|^~\\&|LAB-EXPORT|{site.facilities[0]}|||{received[:4]}||ZLE^Z01|x|P|2.5")
    return MappingContext(site=site, message=msh, pseudonym_key=key, received=received,
                          lookup_link=lookup_link)


def _patient(ctx: MappingContext, row: LabRow) -> str:
    """The pseudonym of ``site_subject_id`` read as an MRN of the site's subject authority
    (so an export and an HL7 feed of the same MRN meet in one Patient)."""
    authority = ctx.site.identifiers.subject_authority or ctx.site.facilities[0]
    resolution = ps.resolve(ctx, [ps.Cx(row.subject, authority, "MR", "site_subject_id")])
    assert resolution is not None
    ps.learn(ctx, resolution.links)
    if ("Patient", resolution.pseudonym) not in ctx.resources:
        ctx.add(patient_resource(ctx, resolution.pseudonym, EMPTY_PID))
    return resolution.pseudonym


def _study_links(ctx: MappingContext, row: LabRow, patient: str) -> list[Resource]:
    """ResearchStudy (from the studies file) and an on-study ResearchSubject, as the HL7
    mapping makes them for CTI; the study extension for Observation and Specimen."""
    if row.study is None:
        return []
    sid = ctx.add(known_study(row.study))["id"]
    ctx.add(subject_base(sid, patient, "on-study"))
    return [{"url": STUDY_EXTENSION, "valueReference": {"reference": f"ResearchStudy/{sid}"}}]


def _specimen_ref(ctx: MappingContext, number: str, din: str = "") -> tuple[str, list[Resource]]:
    idents = [din_identifier(din)] if din else []
    idents.append(dt.hashed_identifier("specimen", f"urn:plagencell:site:{ctx.site.id}:specimen",
                                       number, ctx.pseudonym, "FILL"))
    chosen = idents[0]
    return ctx.rid("Specimen", chosen["system"], chosen["value"]), idents


def _specimens(ctx: MappingContext, row: LabRow, patient: str,
               study: list[Resource]) -> str | None:
    if not row.specimen_id:
        return None
    subject = {"reference": f"Patient/{patient}"}
    sid, idents = _specimen_ref(ctx, row.specimen_id, row.product_din)
    specimen: Resource = {"resourceType": "Specimen", "id": sid, "identifier": idents,
                          "status": "available", "subject": subject}
    if study:
        specimen["extension"] = study
    if row.specimen_type:
        specimen["type"] = {"text": row.specimen_type}
    if row.collected_at:
        specimen["collection"] = {"collectedDateTime": row.collected_at}
    if row.parent_specimen_id:
        pid, pidents = _specimen_ref(ctx, row.parent_specimen_id)
        specimen["parent"] = [{"reference": f"Specimen/{pid}"}]
        if ("Specimen", pid) not in ctx.resources:
            ctx.add({"resourceType": "Specimen", "id": pid, "meta": {"tag": [dict(STUB_TAG)]},
                     "identifier": pidents, "subject": subject})
    ctx.add(specimen)
    return sid


def _code(row: LabRow) -> Resource:
    codings = []
    if row.code is not None:
        codings.append({k: v for k, v in (("system", row.code.system), ("code", row.code.code),
                                          ("display", row.code.display)) if v})
    local = {"system": row.local.system, "code": row.local.code}
    codings.append(local)
    concept: Resource = {"coding": codings}
    if row.local.display:
        concept["text"] = row.local.display
    return concept


def _value(row: LabRow, obs: Resource) -> None:
    if isinstance(row.value, str):
        obs["valueString"] = row.value
        return
    number: int | float = int(row.value) if row.value.is_integer() else row.value
    unit = {"unit": row.unit, "system": t.UCUM, "code": row.unit} if row.unit else {}
    obs["valueQuantity"] = dt.quantity(number, unit, row.comparator)


def _reference_range(row: LabRow) -> list[Resource]:
    text = row.reference_range.strip()
    if not text:
        return []
    return [{"text": text}]


def _interpretation(row: LabRow) -> list[Resource]:
    code = INTERPRETATION.get(row.interpretation.strip().upper())
    if code:
        return [{"coding": [{"system": INTERPRETATION_SYSTEM, "code": code}]}]
    return [{"text": row.interpretation}] if row.interpretation else []


def _observation_key(row: LabRow, subject: str) -> tuple[str, ...]:
    """The row's own identity: its specimen (else patient), the local code AS SENT and its
    time; never the code map's answer (``row.code``), so a code-map change keeps the id."""
    return (subject, row.local.system, row.local.code,
            row.collected_at or row.performed_at or "")


def build_row(ctx: MappingContext, row: LabRow, file_sha: str, filename: str) -> list[str]:
    """Add the resources of one row to ``ctx``; returns the ``Type/id`` of those it made."""
    patient = _patient(ctx, row)
    study = _study_links(ctx, row, patient)
    specimen = _specimens(ctx, row, patient, study)
    code = _code(row)
    key = _observation_key(row, specimen or patient)
    obs: Resource = {"resourceType": "Observation", "id": ctx.rid("Observation", "export", *key),
                     "status": row.status, "category": [LABORATORY], "code": code,
                     "subject": {"reference": f"Patient/{patient}"}}
    if study:
        obs["extension"] = study
    if row.collected_at or row.performed_at:
        obs["effectiveDateTime"] = row.collected_at or row.performed_at
    if row.performed_at and "T" in row.performed_at:
        obs["issued"] = row.performed_at
    _value(row, obs)
    for name, items in (("interpretation", _interpretation(row)),
                        ("referenceRange", _reference_range(row))):
        if items:
            obs[name] = items
    if specimen:
        obs["specimen"] = {"reference": f"Specimen/{specimen}"}
    obs["performer"] = [organization_reference(ctx.site)]
    ctx.add(obs)
    targets = [f"Observation/{obs['id']}"] + ([f"Specimen/{specimen}"] if specimen else [])
    ctx.add(_provenance(ctx, row, targets, file_sha, filename))
    return targets


def _provenance(ctx: MappingContext, row: LabRow, targets: list[str], file_sha: str,
                filename: str) -> Resource:
    return {
        "resourceType": "Provenance", "id": ctx.rid("Provenance", "export", file_sha,
                                                    str(row.row)),
        "target": [{"reference": t_} for t_ in targets], "recorded": ctx.received,
        "activity": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/"
                                 "v3-DataOperation", "code": "CREATE"}]},
        "agent": [{"type": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/"
                                        "provenance-participant-type", "code": "author"}]},
                   "who": organization_reference(ctx.site)}],
        "entity": [{"role": "source", "what": {
            "identifier": {"system": EXPORT_SYSTEM, "value": f"sha256:{file_sha}#row={row.row}"},
            "display": f"{filename}, row {row.row}"}}],
        "policy": [f"urn:plagencell:mapping:{MAPPING_VERSION}"],
    }


def site_organization(site: Site) -> Resource:
    return organization(site)
