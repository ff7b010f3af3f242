"""PID → pseudonymised Patient, and ADT^A40 merges (MRG).

What survives of the PID: the pseudonym (``pseudonym.py``), administrative gender (PID-8,
table 0001), the year of birth (PID-7), deceased as a boolean (PID-30, or PID-29 valued).
No ``managingOrganization``: one person known at two sites (same codice fiscale) is one
Patient, and naming the sending site would make every message from the other site a new
version; the Provenance of each message names its site.
Everything else (names, addresses, phones, mother's maiden name, SSN, race, ethnicity,
account and visit numbers, MRNs in clear) is dropped. The resource is built only from the
fields kept, so an update that changes dropped fields only produces an identical resource.
"""

from __future__ import annotations

import re

from gateway.errors import MappingError
from gateway.hl7.parser import Composite, Segment, escape
from gateway.mapping import pseudonym as ps
from gateway.mapping.context import (
    PSEUDONYM_SYSTEM,
    SECURITY_PSEUDED,
    MappingContext,
    Resource,
)
from gateway.mapping.manifest import occurrence
from gateway.mapping.overrides import override

V2_0203 = "http://terminology.hl7.org/CodeSystem/v2-0203"
ANON_TYPE = {"coding": [{"system": V2_0203, "code": "ANON", "display": "Anonymous identifier"}]}
# HL7 table 0001 → FHIR administrative-gender (v2-to-FHIR IG ConceptMap table-0001).
GENDER = {"F": "female", "M": "male", "O": "other", "U": "unknown", "A": "other",
          "N": "unknown"}
_YEAR = re.compile(r"^(1[89]\d\d|2\d\d\d)")


def map_patient(ctx: MappingContext, pid: Segment) -> str:
    """Add the Patient of ``pid`` (and the prior Patient it supersedes, if any); its id."""
    ids = ps.read_cx_list(ctx, pid_identifiers(ctx, pid), "PID-3")
    resolution = ps.resolve(ctx, ids)
    if resolution is None:
        raise MappingError("PID-3: patient identifier list is empty", segment="PID",
                           field=3, sequence=occurrence(ctx.message, pid), code="101")
    ps.learn(ctx, resolution.links)
    ctx.add(patient_resource(ctx, resolution.pseudonym, pid))
    if resolution.conflicts:
        ctx.warn(f"PID[{occurrence(ctx.message, pid)}]-3", "an identifier of this PID was "
                 "linked to another patient: the link now points to this one; check the "
                 "sender's patient identities", code="conflict")
    for prior in sorted(resolution.superseded):
        seq = occurrence(ctx.message, pid)
        ctx.info(f"PID[{seq}]-3", "identifiers previously linked to another "
                 "pseudonym now resolve to this one (codice fiscale first seen): the earlier "
                 "Patient is marked replaced-by", code="informational")
        _supersede(ctx, prior, resolution.pseudonym)
    return resolution.pseudonym


def pid_identifiers(ctx: MappingContext, pid: Segment) -> list[Composite]:
    """PID-3, plus the value of the site's override of Patient.identifier as one more CX
    (assigning authority: the site's first MRN authority, else its first facility; MR)."""
    reps = pid.reps(3)
    hit = override(ctx.site, "Patient.identifier", pid, ctx.message)
    if hit is None:
        return reps
    rules = ctx.site.identifiers
    authority = (rules.mrn_authorities or ctx.site.facilities)[0]
    enc = pid.enc
    value = escape(hit[0], enc)
    return [*reps, Composite(enc.component.join((value, "", "", authority, "MR")), enc)]


def patient_resource(ctx: MappingContext, pseudonym: str, pid: Segment) -> Resource:
    patient: Resource = {
        "resourceType": "Patient",
        "id": pseudonym,
        "meta": {"security": [dict(SECURITY_PSEUDED)]},
        "identifier": [pseudonym_identifier(pseudonym)],
        "active": True,
    }
    gender = GENDER.get(pid.get(8).upper())
    if gender:
        patient["gender"] = gender
    year = _YEAR.match(pid.get(7))
    if year:
        patient["birthDate"] = year.group(1)
    deceased = _deceased(pid)
    if deceased is not None:
        patient["deceasedBoolean"] = deceased
    return patient


def pseudonym_identifier(pseudonym: str) -> Resource:
    return {"use": "secondary", "type": ANON_TYPE, "system": PSEUDONYM_SYSTEM,
            "value": pseudonym}


def _deceased(pid: Segment) -> bool | None:
    flag = pid.get(30).upper()
    if flag in ("Y", "N"):
        return flag == "Y"
    return True if pid.get(29) else None


# --- ADT^A40: merge patient identifier list --------------------------------------------
def map_merge(ctx: MappingContext, pid: Segment, mrg: Segment) -> None:
    """MRG-1 names the prior patient: it becomes inactive and ``replaced-by`` the survivor
    (PID), the survivor ``replaces`` it, and every prior identifier links to the survivor."""
    survivor = map_patient(ctx, pid)
    prior_ids = ps.read_cx_list(ctx, mrg.reps(1), "MRG-1")
    prior = ps.resolve(ctx, prior_ids)
    if prior is None:
        raise MappingError("MRG-1: prior patient identifier list is empty", segment="MRG",
                           field=1, sequence=occurrence(ctx.message, mrg), code="101")
    if prior.pseudonym == survivor:
        seq = occurrence(ctx.message, mrg)
        ctx.info(f"MRG[{seq}]-1", "prior identifiers already resolve to the "
                 "surviving patient: nothing to merge")
        return
    ps.learn(ctx, {key: survivor for key in prior.links})
    _supersede(ctx, prior.pseudonym, survivor)


def _supersede(ctx: MappingContext, prior: str, survivor: str) -> None:
    """Prior Patient: inactive, ``replaced-by`` survivor; survivor: ``replaces`` prior."""
    ctx.add({
        "resourceType": "Patient",
        "id": prior,
        "meta": {"security": [dict(SECURITY_PSEUDED)]},
        "identifier": [pseudonym_identifier(prior)],
        "active": False,
        "link": [{"other": {"reference": f"Patient/{survivor}"}, "type": "replaced-by"}],
    })
    kept = ctx.resources[("Patient", survivor)]
    links = [*kept.get("link", []),
             {"other": {"reference": f"Patient/{prior}"}, "type": "replaces"}]
    kept["link"] = links
