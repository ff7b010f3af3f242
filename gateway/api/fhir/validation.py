"""Validation of writes: the official FHIR R4 JSON schema, then the R4B models.

The schema (HL7, CC0) ships as package data in ``gateway/data/fhir.schema.json``;
``GATEWAY_FHIR_SCHEMA`` may point at another copy. One Draft-6 validator is compiled per
resource type on first use (≈0.2 ms per resource afterwards, against ≈10 ms through the
schema's top-level ``oneOf``). Errors become one OperationOutcome (422) with a
FHIRPath-style ``expression`` per issue; values are never echoed (no PHI).
"""

from __future__ import annotations

import os
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Any

import jsonschema
import orjson
from pydantic import ValidationError

from gateway import fhir

from .outcomes import FhirError, issue, outcome

MAX_ISSUES = 50


@cache
def _schema() -> dict[str, Any]:
    override = os.environ.get("GATEWAY_FHIR_SCHEMA")
    if override:
        raw = Path(override).read_bytes()
    else:
        raw = resources.files("gateway").joinpath("data/fhir.schema.json").read_bytes()
    schema: dict[str, Any] = orjson.loads(raw)
    return schema


def resource_types() -> list[str]:
    """Every resource type the schema knows (for 'unknown resource type' answers)."""
    mapping = _schema()["discriminator"]["mapping"]
    return sorted(mapping)


@cache
def _validator(resource_type: str) -> jsonschema.Draft6Validator:
    schema = _schema()
    sub = {"$schema": schema["$schema"], "$ref": f"#/definitions/{resource_type}",
           "definitions": schema["definitions"]}
    return jsonschema.Draft6Validator(sub)


def fhirpath(resource_type: str, path: Any) -> str:
    out = resource_type
    for part in path:
        out += f"[{part}]" if isinstance(part, int) else f".{part}"
    return out


def schema_issues(resource: dict[str, Any]) -> list[dict[str, Any]]:
    rtype = resource["resourceType"]
    issues = []
    for err in _validator(rtype).iter_errors(resource):
        issues.append(issue(_schema_code(err), _schema_message(err),
                            expression=[fhirpath(rtype, _error_path(err))]))
        if len(issues) >= MAX_ISSUES:
            break
    return issues


def _error_path(err: jsonschema.ValidationError) -> list[Any]:
    """Where the error is; for a missing or unexpected element, the element itself."""
    path = list(err.absolute_path)
    if not isinstance(err.instance, dict):
        return path
    if err.validator == "required":
        missing = [p for p in err.validator_value if p not in err.instance]
        return path + missing[:1]
    if err.validator == "additionalProperties":
        extra = [p for p in err.instance if p not in err.schema.get("properties", {})]
        return path + extra[:1]
    return path


def _schema_code(err: jsonschema.ValidationError) -> str:
    return {"required": "required", "additionalProperties": "structure",
            "type": "structure"}.get(str(err.validator), "value")


def _schema_message(err: jsonschema.ValidationError) -> str:
    """The schema's complaint without the offending value (it may be patient data)."""
    kind = str(err.validator)
    if kind == "enum":
        return f"value is not one of the codes allowed: {err.validator_value}"
    if kind == "pattern":
        return f"value does not match the FHIR datatype pattern {err.validator_value}"
    if kind == "type":
        return f"value is not of JSON type {err.validator_value}"
    if kind == "const":
        return f"value must be {err.validator_value}"
    return err.message if kind in ("required", "additionalProperties") else f"{kind} failed"


def model_issues(resource: dict[str, Any]) -> list[dict[str, Any]]:
    rtype = resource["resourceType"]
    try:
        fhir.validate(resource)
    except ValidationError as exc:
        return [issue("invariant" if e["type"] == "value_error" else "structure",
                      e["msg"], expression=[fhirpath(rtype, e["loc"])])
                for e in exc.errors(include_url=False, include_input=False)[:MAX_ISSUES]]
    return []


def validate_resource(resource: dict[str, Any]) -> None:
    """Raise a 422 FhirError naming every problem found; return quietly when valid."""
    rtype = resource.get("resourceType")
    if not isinstance(rtype, str) or rtype not in _schema()["discriminator"]["mapping"]:
        raise FhirError.of("not-supported", f"unknown resource type {rtype!r}", status=422,
                           expression=["resourceType"])
    issues = schema_issues(resource) or model_issues(resource)
    if issues:
        raise FhirError(422, outcome(*issues))
