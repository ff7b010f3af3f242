"""The search parameter registry: every standard R4 parameter of the gateway's resource
types, the common ones, and the network's ``research-study``.

Each ``ParamDef`` carries the R4 FHIRPath ``expression`` (published in the
CapabilityStatement and as SearchParameter resources) and the ``paths`` the indexer walks
(dotted element paths over the resource JSON; choice types are listed by their JSON names),
with an optional ``where`` filter on the values found.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from gateway.store.search.definition import ANY, SEARCH_TYPES, ParamDef, p
from gateway.store.search.observation import OBSERVATION

STUDY_EXTENSION = "http://hl7.org/fhir/StructureDefinition/workflow-researchStudy"
NETWORK_BASE = "http://plagencell.example.org/fhir/SearchParameter"


def _system(name: str) -> Callable[[Any], bool]:
    return lambda value: isinstance(value, dict) and value.get("system") == name


def _study_extension(value: Any) -> bool:
    return isinstance(value, dict) and value.get("url") == STUDY_EXTENSION


COMMON = [
    p("_id", "token", "Resource.id", "Logical id of this artifact", "id"),
    p("_lastUpdated", "date", "Resource.meta.lastUpdated", "When the resource version last changed",
      "meta.lastUpdated"),
    p("_tag", "token", "Resource.meta.tag", "Tags applied to this resource", "meta.tag"),
    p("_security", "token", "Resource.meta.security", "Security Labels applied to this resource",
      "meta.security"),
    p("_profile", "uri", "Resource.meta.profile", "Profiles this resource claims to conform to",
      "meta.profile"),
    p("_source", "uri", "Resource.meta.source", "Identifies where the resource comes from",
      "meta.source"),
]

ADDRESS = ["address", "address-city", "address-country", "address-postalcode", "address-state"]


def _address(rtype: str) -> list[ParamDef]:
    field_of = {"address": "address", "address-city": "address.city",
                "address-country": "address.country", "address-postalcode": "address.postalCode",
                "address-state": "address.state"}
    return [p(name, "string", f"{rtype}.{field_of[name]}",
              f"A {name.replace('address-', '')} specified in an address", field_of[name])
            for name in ADDRESS] + [
        p("address-use", "token", f"{rtype}.address.use", "A use code specified in an address",
          "address.use")]


PATIENT = [
    p("active", "token", "Patient.active", "Whether the patient record is active", "active"),
    *_address("Patient"),
    p("birthdate", "date", "Patient.birthDate", "The patient's date of birth", "birthDate",
      single=True),
    p("death-date", "date", "(Patient.deceased as dateTime)",
      "The date of death has been provided and satisfies this search value",
      "deceasedDateTime", single=True),
    p("deceased", "token", "Patient.deceased.exists() and Patient.deceased != false",
      "This patient has been marked as deceased, or as a death date entered",
      extract=lambda r: [bool(r.get("deceasedBoolean") or "deceasedDateTime" in r)]),
    p("email", "token", "Patient.telecom.where(system='email')", "A value in an email contact",
      "telecom", where=_system("email")),
    p("family", "string", "Patient.name.family", "A portion of the family name of the patient",
      "name.family"),
    p("gender", "token", "Patient.gender", "Gender of the patient", "gender"),
    p("general-practitioner", "reference", "Patient.generalPractitioner",
      "Patient's nominated general practitioner", "generalPractitioner",
      targets=("Organization", "Practitioner", "PractitionerRole")),
    p("given", "string", "Patient.name.given", "A portion of the given name of the patient",
      "name.given"),
    p("identifier", "token", "Patient.identifier", "A patient identifier", "identifier"),
    p("language", "token", "Patient.communication.language", "Language code",
      "communication.language"),
    p("link", "reference", "Patient.link.other", "All patients linked to the given patient",
      "link.other", targets=("Patient", "RelatedPerson")),
    p("name", "string", "Patient.name",
      "A server defined search that may match any of the string fields in the HumanName",
      "name"),
    p("organization", "reference", "Patient.managingOrganization",
      "The organization that is the custodian of the patient record", "managingOrganization",
      targets=("Organization",)),
    p("phone", "token", "Patient.telecom.where(system='phone')", "A value in a phone contact",
      "telecom", where=_system("phone")),
    p("phonetic", "string", "Patient.name", "A portion of either family or given name using "
      "some kind of phonetic matching algorithm", "name"),
    p("telecom", "token", "Patient.telecom", "The value in any kind of telecom details",
      "telecom"),
]

ORGANIZATION = [
    p("active", "token", "Organization.active", "Is the Organization record active", "active"),
    *_address("Organization"),
    p("endpoint", "reference", "Organization.endpoint",
      "Technical endpoints providing access to services operated for the organization",
      "endpoint", targets=("Endpoint",)),
    p("identifier", "token", "Organization.identifier",
      "Any identifier for the organization (not the accreditation issuer's identifier)",
      "identifier"),
    p("name", "string", "Organization.name | Organization.alias",
      "A portion of the organization's name or alias", "name", "alias"),
    p("partof", "reference", "Organization.partOf",
      "An organization of which this organization forms a part", "partOf",
      targets=("Organization",)),
    p("phonetic", "string", "Organization.name",
      "A portion of the organization's name using some kind of phonetic matching algorithm",
      "name"),
    p("type", "token", "Organization.type", "A code for the type of organization", "type"),
]

RESEARCH_STUDY = [
    p("category", "token", "ResearchStudy.category", "Classifications for the study",
      "category"),
    p("condition", "token", "ResearchStudy.condition", "Condition being studied", "condition"),
    p("date", "date", "ResearchStudy.period", "When the study began and ended", "period",
      single=True),
    p("focus", "token", "ResearchStudy.focus", "Drugs, devices, etc. under study", "focus"),
    p("identifier", "token", "ResearchStudy.identifier", "Business Identifier for study",
      "identifier"),
    p("keyword", "token", "ResearchStudy.keyword", "Used to search for the study", "keyword"),
    p("location", "token", "ResearchStudy.location", "Geographic region(s) for study",
      "location"),
    p("partof", "reference", "ResearchStudy.partOf", "Part of larger study", "partOf",
      targets=("ResearchStudy",)),
    p("principalinvestigator", "reference", "ResearchStudy.principalInvestigator",
      "Researcher who oversees multiple aspects of the study", "principalInvestigator",
      targets=("Practitioner", "PractitionerRole")),
    p("protocol", "reference", "ResearchStudy.protocol", "Steps followed in executing study",
      "protocol", targets=("PlanDefinition",)),
    p("site", "reference", "ResearchStudy.site", "Facility where study activities are conducted",
      "site", targets=("Location",)),
    p("sponsor", "reference", "ResearchStudy.sponsor",
      "Organization that initiates and is legally responsible for the study", "sponsor",
      targets=("Organization",)),
    p("status", "token", "ResearchStudy.status", "active | administratively-completed | "
      "approved | closed-to-accrual | closed-to-accrual-and-intervention | completed | "
      "disapproved | in-review | temporarily-closed-to-accrual | "
      "temporarily-closed-to-accrual-and-intervention | withdrawn", "status"),
    p("title", "string", "ResearchStudy.title", "Name for this study", "title"),
]

RESEARCH_SUBJECT = [
    p("date", "date", "ResearchSubject.period", "Start and end of participation", "period",
      single=True),
    p("identifier", "token", "ResearchSubject.identifier", "Business Identifier for research "
      "subject in a study", "identifier"),
    p("individual", "reference", "ResearchSubject.individual", "Who is part of study",
      "individual", targets=("Patient",)),
    p("patient", "reference", "ResearchSubject.individual", "Who is part of study",
      "individual", targets=("Patient",)),
    p("status", "token", "ResearchSubject.status", "candidate | eligible | follow-up | "
      "ineligible | not-registered | off-study | on-study | on-study-intervention | "
      "on-study-observation | pending-on-study | potential-candidate | screening | withdrawn",
      "status"),
    p("study", "reference", "ResearchSubject.study", "Study subject is part of", "study",
      targets=("ResearchStudy",)),
]

RESEARCH_STUDY_PARAM = p(
    "research-study", "reference",
    f"{{type}}.extension('{STUDY_EXTENSION}').value",
    "The research study this record belongs to (workflow-researchStudy extension)",
    "extension", targets=("ResearchStudy",), where=_study_extension)

SPECIMEN = [
    p("accession", "token", "Specimen.accessionIdentifier",
      "The accession number associated with the specimen", "accessionIdentifier"),
    p("bodysite", "token", "Specimen.collection.bodySite",
      "The code for the body site from where the specimen originated",
      "collection.bodySite"),
    p("collected", "date", "Specimen.collection.collected",
      "The date the specimen was collected", "collection.collectedDateTime",
      "collection.collectedPeriod", single=True),
    p("collector", "reference", "Specimen.collection.collector", "Who collected the specimen",
      "collection.collector", targets=("Practitioner", "PractitionerRole")),
    p("container", "token", "Specimen.container.type", "The kind of specimen container",
      "container.type"),
    p("container-id", "token", "Specimen.container.identifier",
      "The unique identifier associated with the specimen container",
      "container.identifier"),
    p("identifier", "token", "Specimen.identifier", "The unique identifier associated with "
      "the specimen", "identifier"),
    p("parent", "reference", "Specimen.parent", "The parent of the specimen", "parent",
      targets=("Specimen",)),
    p("patient", "reference", "Specimen.subject.where(resolve() is Patient)",
      "The patient the specimen comes from", "subject", targets=("Patient",)),
    p("status", "token", "Specimen.status", "available | unavailable | unsatisfactory | "
      "entered-in-error", "status"),
    p("subject", "reference", "Specimen.subject", "The subject of the specimen", "subject",
      targets=("Device", "Group", "Location", "Patient", "Substance")),
    p("type", "token", "Specimen.type", "The specimen type", "type"),
]

PROVENANCE = [
    p("agent", "reference", "Provenance.agent.who", "Who participated", "agent.who",
      targets=("Device", "Organization", "Patient", "Practitioner", "PractitionerRole",
               "RelatedPerson")),
    p("agent-role", "token", "Provenance.agent.role", "What the agents role was",
      "agent.role"),
    p("agent-type", "token", "Provenance.agent.type", "How the agent participated",
      "agent.type"),
    p("entity", "reference", "Provenance.entity.what", "Identity of entity", "entity.what",
      targets=ANY),
    p("location", "reference", "Provenance.location", "Where the activity occurred, if "
      "relevant", "location", targets=("Location",)),
    p("patient", "reference", "Provenance.target.where(resolve() is Patient)",
      "Target Reference(s) (usually version specific)", "target", targets=("Patient",)),
    p("recorded", "date", "Provenance.recorded", "When the activity was recorded / updated",
      "recorded", single=True),
    p("signature-type", "token", "Provenance.signature.type", "Indication of the reason the "
      "entity signed the object(s)", "signature.type"),
    p("target", "reference", "Provenance.target", "Target Reference(s) (usually version "
      "specific)", "target", targets=ANY),
    p("when", "date", "(Provenance.occurred as dateTime)", "When the activity occurred",
      "occurredDateTime", "occurredPeriod", single=True),
]


GROUP = [
    p("actual", "token", "Group.actual", "Descriptive or actual", "actual"),
    p("characteristic", "token", "Group.characteristic.code", "Kind of characteristic",
      "characteristic.code"),
    p("code", "token", "Group.code", "The kind of resources contained", "code"),
    p("exclude", "token", "Group.characteristic.exclude", "Group includes or excludes",
      "characteristic.exclude"),
    p("identifier", "token", "Group.identifier", "Unique id", "identifier"),
    p("managing-entity", "reference", "Group.managingEntity", "Entity that is the custodian "
      "of the Group's definition", "managingEntity",
      targets=("Organization", "Practitioner", "PractitionerRole", "RelatedPerson")),
    p("member", "reference", "Group.member.entity", "Reference to the group member",
      "member.entity", targets=("Device", "Group", "Medication", "Patient", "Practitioner",
                                "PractitionerRole", "Substance")),
    p("type", "token", "Group.type", "The type of resources the group contains", "type"),
    p("value", "token", "(Group.characteristic.value as CodeableConcept) | "
      "(Group.characteristic.value as boolean)", "Value held by characteristic",
      "characteristic.valueCodeableConcept", "characteristic.valueBoolean"),
]


def _registry() -> dict[str, dict[str, ParamDef]]:
    table = {
        "Patient": PATIENT, "Organization": ORGANIZATION, "ResearchStudy": RESEARCH_STUDY,
        "ResearchSubject": RESEARCH_SUBJECT, "Specimen": SPECIMEN + [RESEARCH_STUDY_PARAM],
        "Observation": OBSERVATION + [RESEARCH_STUDY_PARAM], "Provenance": PROVENANCE,
        "Group": GROUP + [RESEARCH_STUDY_PARAM],
    }
    registry: dict[str, dict[str, ParamDef]] = {}
    for rtype, params in table.items():
        registry[rtype] = {d.name: _bind(d, rtype) for d in [*COMMON, *params]}
    return registry


def _bind(definition: ParamDef, rtype: str) -> ParamDef:
    common = definition.name.startswith("_")
    network = definition.name == "research-study"
    url = (f"http://hl7.org/fhir/SearchParameter/Resource-{definition.name[1:]}" if common
           else f"{NETWORK_BASE}/{rtype}-{definition.name}" if network
           else f"http://hl7.org/fhir/SearchParameter/{rtype}-{definition.name}")
    expression = definition.expression.replace("{type}", rtype)
    return ParamDef(definition.name, definition.type, expression, definition.description,
                    definition.paths, definition.targets, definition.where,
                    definition.components, definition.extract, definition.single, url,
                    (rtype,), definition.reads)


REGISTRY = _registry()
RESOURCE_TYPES = tuple(sorted(REGISTRY))


def search_parameters(resource_type: str) -> list[ParamDef]:
    """All search parameters of ``resource_type`` (empty for an unsupported type)."""
    return list(REGISTRY.get(resource_type, {}).values())


def lookup(resource_type: str, name: str) -> ParamDef | None:
    return REGISTRY.get(resource_type, {}).get(name)


__all__ = ["ANY", "RESOURCE_TYPES", "SEARCH_TYPES", "ParamDef", "lookup", "p",
           "search_parameters"]
