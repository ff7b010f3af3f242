"""The one place that names the FHIR model package (R4B models are identical to R4 for
the resources the gateway emits). Builders produce plain JSON-ready dicts on the hot path;
``validate`` checks them against the typed models where speed does not matter."""

from __future__ import annotations

from typing import Any

from fhir.resources.R4B import get_fhir_model_class

FHIR_VERSION = "4.0.1"
FHIR_MEDIA_TYPE = "application/fhir+json; fhirVersion=4.0"

__all__ = ["FHIR_MEDIA_TYPE", "FHIR_VERSION", "get_fhir_model_class", "model_of", "validate"]


def model_of(resource_type: str) -> Any:
    return get_fhir_model_class(resource_type)


def validate(resource: dict[str, Any]) -> Any:
    """Parse a resource dict with the R4B model; raises pydantic.ValidationError."""
    return model_of(resource["resourceType"]).model_validate(resource)
