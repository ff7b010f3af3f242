"""Observation's R4 search parameters, including the composite code-value pairs."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from gateway.store.search.definition import ANY, ParamDef, p

Pairs = Callable[[dict[str, Any]], list[dict[str, Any]]]

VALUE_ELEMENT = {"quantity": "valueQuantity", "token": "valueCodeableConcept",
                 "date": "valueDateTime", "string": "valueString"}
SUBJECTS = ("Device", "Group", "Location", "Patient")
REQUESTS = ("CarePlan", "DeviceRequest", "ImmunizationRecommendation", "MedicationRequest",
            "NutritionOrder", "ServiceRequest")


def _own(resource: dict[str, Any]) -> list[dict[str, Any]]:
    return [resource]


def _components(resource: dict[str, Any]) -> list[dict[str, Any]]:
    return [c for c in resource.get("component", []) if isinstance(c, dict)]


def _both(resource: dict[str, Any]) -> list[dict[str, Any]]:
    return _own(resource) + _components(resource)


def _pairs(sources: Pairs, value_type: str) -> Callable[[dict[str, Any]], list[Any]]:
    """(code, value) pairs: one per coding of ``code`` with the value element."""
    element = VALUE_ELEMENT[value_type]

    def extract(resource: dict[str, Any]) -> list[Any]:
        out: list[Any] = []
        for source in sources(resource):
            value = source.get(element)
            if value is None and value_type == "date":
                value = source.get("valuePeriod")
            if value is not None:
                out.extend((coding, value) for coding in (source.get("code") or {})
                           .get("coding", []))
        return out

    return extract


def _reads(prefix: str, kind: str) -> tuple[str, ...]:
    """The top-level elements a pair extractor needs one of (the indexer skips it without)."""
    own = (VALUE_ELEMENT[kind], "valuePeriod") if kind == "date" else (VALUE_ELEMENT[kind],)
    return {"code-value": own, "component-code-value": ("component",)}.get(
        prefix, (*own, "component"))


def _composites() -> list[ParamDef]:
    out = []
    for prefix, sources, where in (("code-value", _own, "Observation"),
                                   ("component-code-value", _components,
                                    "Observation.component"),
                                   ("combo-code-value", _both,
                                    "Observation | Observation.component")):
        for kind, label in (("quantity", "quantity"), ("token", "concept"), ("date", "date"),
                            ("string", "string")):
            if prefix != "code-value" and kind in ("date", "string"):
                continue  # R4 defines these two for Observation.value only
            element = "value" if kind != "token" else "value.as(CodeableConcept)"
            out.append(p(f"{prefix}-{label}", "composite",
                         f"{where}", f"Code and {label} value parameter pair "
                         f"({'code' if prefix == 'code-value' else 'component code'}, "
                         f"{element})", components=("token", kind),
                         extract=_pairs(sources, kind), reads=_reads(prefix, kind)))
    return out


OBSERVATION = [
    p("based-on", "reference", "Observation.basedOn",
      "Reference to the service request", "basedOn", targets=REQUESTS),
    p("category", "token", "Observation.category",
      "The classification of the type of observation", "category"),
    p("code", "token", "Observation.code", "The code of the observation type", "code"),
    p("combo-code", "token", "Observation.code | Observation.component.code",
      "The code of the observation type or component type", "code", "component.code"),
    p("combo-data-absent-reason", "token",
      "Observation.dataAbsentReason | Observation.component.dataAbsentReason",
      "The reason why the expected value in the element Observation.value[x] or "
      "Observation.component.value[x] is missing.", "dataAbsentReason",
      "component.dataAbsentReason"),
    p("combo-value-concept", "token",
      "(Observation.value as CodeableConcept) | (Observation.component.value as "
      "CodeableConcept)", "The value or component value of the observation, if the value "
      "is a CodeableConcept", "valueCodeableConcept", "component.valueCodeableConcept"),
    p("combo-value-quantity", "quantity",
      "(Observation.value as Quantity) | (Observation.value as SampledData) | "
      "(Observation.component.value as Quantity) | (Observation.component.value as "
      "SampledData)", "The value or component value of the observation, if the value is a "
      "Quantity, or a SampledData", "valueQuantity", "component.valueQuantity"),
    p("component-code", "token", "Observation.component.code",
      "The component code of the observation type", "component.code"),
    p("component-data-absent-reason", "token", "Observation.component.dataAbsentReason",
      "The reason why the expected value in the element Observation.component.value[x] is "
      "missing.", "component.dataAbsentReason"),
    p("component-value-concept", "token",
      "(Observation.component.value as CodeableConcept)",
      "The value of the component observation, if the value is a CodeableConcept",
      "component.valueCodeableConcept"),
    p("component-value-quantity", "quantity",
      "(Observation.component.value as Quantity) | (Observation.component.value as "
      "SampledData)", "The value of the component observation, if the value is a Quantity, "
      "or a SampledData", "component.valueQuantity"),
    p("data-absent-reason", "token", "Observation.dataAbsentReason",
      "The reason why the expected value in the element Observation.value[x] is missing.",
      "dataAbsentReason"),
    p("date", "date", "Observation.effective",
      "Obtained date/time. If the obtained element is a period, a date that falls in the "
      "period", "effectiveDateTime", "effectivePeriod", "effectiveInstant", single=True),
    p("derived-from", "reference", "Observation.derivedFrom",
      "Related measurements the observation is made from", "derivedFrom", targets=(
          "DocumentReference", "ImagingStudy", "Media", "MolecularSequence", "Observation",
          "QuestionnaireResponse")),
    p("device", "reference", "Observation.device",
      "The Device (or DeviceMetric) that generated the observation data.", "device",
      targets=("Device", "DeviceMetric")),
    p("encounter", "reference", "Observation.encounter",
      "Encounter related to the observation", "encounter", targets=("Encounter",)),
    p("focus", "reference", "Observation.focus", "The focus of an observation when the focus "
      "is not the patient of record.", "focus", targets=ANY),
    p("has-member", "reference", "Observation.hasMember",
      "Related resource that belongs to the Observation group", "hasMember",
      targets=("MolecularSequence", "Observation", "QuestionnaireResponse")),
    p("identifier", "token", "Observation.identifier",
      "The unique id for a particular observation", "identifier"),
    p("method", "token", "Observation.method", "The method used for the observation",
      "method"),
    p("part-of", "reference", "Observation.partOf",
      "Part of referenced event", "partOf", targets=(
          "ImagingStudy", "Immunization", "MedicationAdministration", "MedicationDispense",
          "MedicationStatement", "Procedure")),
    p("patient", "reference", "Observation.subject.where(resolve() is Patient)",
      "The subject that the observation is about (if patient)", "subject",
      targets=("Patient",)),
    p("performer", "reference", "Observation.performer", "Who performed the observation",
      "performer", targets=("CareTeam", "Organization", "Patient", "Practitioner",
                            "PractitionerRole", "RelatedPerson")),
    p("specimen", "reference", "Observation.specimen",
      "Specimen used for this observation", "specimen", targets=("Specimen",)),
    p("status", "token", "Observation.status", "The status of the observation", "status"),
    p("subject", "reference", "Observation.subject",
      "The subject that the observation is about", "subject", targets=SUBJECTS),
    p("value-concept", "token", "(Observation.value as CodeableConcept)",
      "The value of the observation, if the value is a CodeableConcept",
      "valueCodeableConcept"),
    p("value-date", "date", "(Observation.value as dateTime) | (Observation.value as Period)",
      "The value of the observation, if the value is a date or period of time",
      "valueDateTime", "valuePeriod"),
    p("value-quantity", "quantity",
      "(Observation.value as Quantity) | (Observation.value as SampledData)",
      "The value of the observation, if the value is a Quantity, or a SampledData",
      "valueQuantity"),
    p("value-string", "string", "(Observation.value as string) | (Observation.value as "
      "CodeableConcept).text", "The value of the observation, if the value is a string, and "
      "also searches in CodeableConcept.text", "valueString", "valueCodeableConcept.text"),
    *_composites(),
]
