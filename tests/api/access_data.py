"""Two studies, two sites and shared patients, with an independent Python model of the
per-study access rule (docs/security.md) to compare the server's answers with.

Who is where:
  study-a (identifier EUCT 2024-A): p1, p3          study-b: p2, p3          study-c: nobody
  p4 is enrolled nowhere.
  o5 is tagged study-a but its subject is p2 (enrolled in study-b only): a study-a client
  sees o5 and not p2, so chains and includes through o5.subject must not show p2.
  o3b is tagged study-b and is about the shared p3: a study-a client sees p3 and not o3b.
  site1 sent p1, o1, o5, rs-1a, study-a, sp1, and (prov-mixed) p3, o3a, o3b;
  site2 sent p2, o2, rs-2b, study-b.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from gateway.store.cohort import group_id

STUDY_EXT = "http://hl7.org/fhir/StructureDefinition/workflow-researchStudy"
EUCT = "https://euclinicaltrials.eu/clinicalTrialId"
LOINC = "http://loinc.org"
UCUM = "http://unitsofmeasure.org"
SITE = "urn:plagencell:site"
Resource = dict[str, Any]


def ref(key: str) -> dict[str, str]:
    return {"reference": key}


def tag(*studies: str) -> list[dict[str, Any]]:
    return [{"url": STUDY_EXT, "valueReference": ref(f"ResearchStudy/{s}")} for s in studies]


def obs(id: str, patient: str, code: str, value: float, when: str, *studies: str,
        **extra: Any) -> Resource:
    out: Resource = {
        "resourceType": "Observation", "id": id, "status": "final",
        "code": {"coding": [{"system": LOINC, "code": code}]},
        "subject": ref(f"Patient/{patient}"), "effectiveDateTime": when,
        "valueQuantity": {"value": value, "unit": "g/dL", "system": UCUM, "code": "g/dL"},
        **extra}
    if studies:
        out["extension"] = tag(*studies)
    return out


def study(id: str, euct: str) -> Resource:
    return {"resourceType": "ResearchStudy", "id": id, "status": "active",
            "title": f"trial {id}", "identifier": [{"system": EUCT, "value": euct}]}


def patient(id: str, gender: str, birth: str) -> Resource:
    return {"resourceType": "Patient", "id": id, "gender": gender, "birthDate": birth,
            "identifier": [{"system": "urn:test:pseudo", "value": id.upper()}]}


def subject(id: str, study_id: str, patient_id: str) -> Resource:
    return {"resourceType": "ResearchSubject", "id": id, "status": "on-study",
            "study": ref(f"ResearchStudy/{study_id}"), "individual": ref(f"Patient/{patient_id}")}


def organization(id: str, site: str) -> Resource:
    return {"resourceType": "Organization", "id": id, "name": f"site {site}",
            "identifier": [{"system": SITE, "value": site}]}


def provenance(id: str, org: str, *targets: str) -> Resource:
    return {"resourceType": "Provenance", "id": id, "recorded": "2026-01-01T00:00:00Z",
            "target": [ref(t) for t in targets],
            "agent": [{"who": ref(f"Organization/{org}")}]}


def specimen(id: str, patient_id: str, *studies: str) -> Resource:
    out: Resource = {"resourceType": "Specimen", "id": id, "subject": ref(f"Patient/{patient_id}"),
                     "type": {"coding": [{"system": "http://snomed.info/sct",
                                          "code": "119297000"}]},
                     "collection": {"collectedDateTime": "2026-01-10T09:00:00Z"}}
    if studies:
        out["extension"] = tag(*studies)
    return out


DATA: list[Resource] = [
    organization("org1", "site1"), organization("org2", "site2"),
    study("study-a", "2024-A"), study("study-b", "2024-B"), study("study-c", "2024-C"),
    patient("p1", "female", "1970-05-01"), patient("p2", "female", "1981-02-02"),
    patient("p3", "male", "1965-03-03"), patient("p4", "male", "1990-04-04"),
    subject("rs-1a", "study-a", "p1"), subject("rs-2b", "study-b", "p2"),
    subject("rs-3a", "study-a", "p3"), subject("rs-3b", "study-b", "p3"),
    specimen("sp1", "p1"), specimen("sp3b", "p3", "study-b"),
    obs("o1", "p1", "718-7", 12.1, "2026-01-10T10:00:00Z", specimen=ref("Specimen/sp1")),
    obs("o2", "p2", "718-7", 9.5, "2026-01-11T10:00:00Z"),
    obs("o3", "p3", "6690-2", 7.0, "2026-01-12T10:00:00Z"),
    obs("o3a", "p3", "718-7", 11.0, "2026-01-13T10:00:00Z", "study-a"),
    obs("o3b", "p3", "777-3", 250.0, "2026-01-14T10:00:00Z", "study-b",
        specimen=ref("Specimen/sp3b")),
    obs("o4", "p4", "718-7", 13.3, "2026-01-15T10:00:00Z"),
    obs("o5", "p2", "6690-2", 6.1, "2026-01-16T10:00:00Z", "study-a",
        hasMember=[ref("Observation/o2")]),
    provenance("prov-1", "org1", "Organization/org1", "ResearchStudy/study-a", "Patient/p1",
               "ResearchSubject/rs-1a", "Observation/o1", "Specimen/sp1", "Observation/o5"),
    provenance("prov-2", "org2", "Organization/org2", "ResearchStudy/study-b", "Patient/p2",
               "ResearchSubject/rs-2b", "Observation/o2"),
    provenance("prov-mixed", "org1", "Patient/p3", "Observation/o3a", "Observation/o3b"),
    provenance("prov-3a", "org1", "Patient/p3", "ResearchSubject/rs-3a", "Observation/o3a"),
]

BY_KEY = {f"{r['resourceType']}/{r['id']}": r for r in DATA}
TYPES = sorted({r["resourceType"] for r in DATA} | {"Group"})  # + the hub's cohort Groups


def _refs(resource: Resource, element: str) -> list[str]:
    value = resource.get(element)
    items = value if isinstance(value, list) else [value] if value else []
    return [item["reference"] for item in items]


def _study_tags(resource: Resource) -> list[str]:
    return [e["valueReference"]["reference"] for e in resource.get("extension", [])
            if e["url"] == STUDY_EXT]


def _studies_rule(studies: set[str], key: str, depth: int = 0) -> bool:
    resource = BY_KEY.get(key)
    if resource is None:
        return False
    rtype = resource["resourceType"]
    if rtype == "Organization":
        return True
    if rtype == "ResearchStudy":
        names = {resource["id"]} | {i["value"] for i in resource.get("identifier", [])}
        return bool(names & studies)
    if rtype == "ResearchSubject":
        return _studies_rule(studies, resource["study"]["reference"])
    if rtype == "Patient":
        return any(r["resourceType"] == "ResearchSubject"
                   and r["individual"]["reference"] == key
                   and _studies_rule(studies, f"ResearchSubject/{r['id']}") for r in DATA)
    if rtype in ("Observation", "Specimen"):
        tags = _study_tags(resource)
        if tags:
            return any(_studies_rule(studies, t) for t in tags)
        return _studies_rule(studies, resource["subject"]["reference"])
    if rtype == "Provenance" and depth == 0:
        targets = _refs(resource, "target")
        return bool(targets) and all(not t.startswith("Provenance/")
                                     and _studies_rule(studies, t, 1) for t in targets)
    return False


def _sites_rule(sites: set[str], key: str) -> bool:
    resource = BY_KEY.get(key)
    if resource is None:
        return False
    if resource["resourceType"] == "Organization":
        return True
    org_of_site = {f"Organization/{r['id']}" for r in DATA if r["resourceType"] == "Organization"
                   and r["identifier"][0]["value"] in sites}
    provenances = [r for r in DATA if r["resourceType"] == "Provenance"
                   and _refs(r["agent"][0], "who")[0] in org_of_site]
    if resource["resourceType"] == "Provenance":
        return resource in provenances
    return any(key in _refs(p, "target") for p in provenances)


def visible(key: str, studies: Iterable[str] | None, sites: Iterable[str] | None) -> bool:
    """The rule of docs/security.md, "Per-study access", in plain Python."""
    if studies is not None and not _studies_rule(set(studies), key):
        return False
    return sites is None or _sites_rule(set(sites), key)


def cohort_visible(study_key: str, studies: Iterable[str] | None,
                   sites: Iterable[str] | None) -> bool:
    """A study's cohort Group (derived by the hub, not in DATA): visible with its study to
    a client restricted to studies, never to one restricted to sites (no site sent it)."""
    return sites is None and (studies is None or _studies_rule(set(studies), study_key))


def visible_keys(studies: Iterable[str] | None, sites: Iterable[str] | None = None
                 ) -> set[str]:
    cohorts = {f"Group/{group_id(r['id'])}" for r in DATA
               if r["resourceType"] == "ResearchStudy"
               and cohort_visible(f"ResearchStudy/{r['id']}", studies, sites)}
    return {key for key in BY_KEY if visible(key, studies, sites)} | cohorts
