"""A Bulk Data kick-off request, read and checked before anything starts.

Parameters (Bulk Data Access 2.0, ``$export``): ``_outputFormat``, ``_since``, ``_type``,
``_typeFilter``, ``includeAssociatedData``; and the gateway's own ``pseudonymize=study``
(Group exports: Patient ids replaced by per-study pseudonyms, ``gateway.export.pseudonyms``).
They come from the query string (GET) or from a ``Parameters`` body (POST). Anything wrong
is a ``ExportRequestError`` naming the parameter: the route answers 400 and starts nothing.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any
from urllib.parse import parse_qsl

from gateway.errors import SearchError
from gateway.store.exports import COMPARTMENT
from gateway.store.search import params as registry
from gateway.store.search.plan import make_plan

OUTPUT_FORMATS = ("application/fhir+ndjson", "application/ndjson", "ndjson")
ASSOCIATED = ("LatestProvenanceResources", "RelevantProvenanceResources")
PSEUDONYMIZE = ("study",)
PATIENT_TYPES = ("Patient", *sorted(COMPARTMENT))
PARAMETERS = ("_outputFormat", "_since", "_type", "_typeFilter", "includeAssociatedData",
              "patient", "pseudonymize")
GENERAL = ("_format", "_pretty")  # FHIR's general parameters: checked by the route, not here


class ExportRequestError(ValueError):
    def __init__(self, parameter: str, message: str) -> None:
        super().__init__(message)
        self.parameter = parameter


@dataclass
class ExportRequest:
    kind: str  # system | patient | group
    types: list[str]  # in export order
    explicit_types: bool = False  # _type was given
    since: str | None = None
    type_filters: dict[str, list[str]] = field(default_factory=dict)  # type → queries
    output_format: str = "application/fhir+ndjson"
    associated: list[str] = field(default_factory=list)
    pseudonymize: str | None = None
    group_id: str | None = None
    patients: list[str] | None = None  # ``patient`` (POST): only these (Patient ids)

    def params(self) -> dict[str, Any]:
        """As kept in the job row (``includeAssociatedData`` without Provenance in the
        types adds the Provenance of the exported resources, and only those)."""
        types = list(self.types)
        associated_only = bool(self.associated) and "Provenance" not in types
        if associated_only:
            types.append("Provenance")
        return {"types": types, "associated_only": associated_only, "since": self.since,
                "type_filters": self.type_filters,
                "output_format": self.output_format, "associated": self.associated,
                "pseudonymize": self.pseudonymize}


def exportable(kind: str) -> tuple[str, ...]:
    return PATIENT_TYPES if kind != "system" else registry.RESOURCE_TYPES


def read_request(kind: str, pairs: Sequence[tuple[str, str]],
                 group_id: str | None = None, *, lenient: bool = False) -> ExportRequest:
    """Check every parameter; the first wrong one raises ``ExportRequestError``. A
    parameter this server does not support (``_elements``, ``_until``, a misspelt
    ``_typ``...) is refused, as Bulk Data 2.0 asks, unless the client sent
    ``Prefer: handling=lenient`` (``lenient``): then it is ignored."""
    values: dict[str, list[str]] = {}
    for name, value in pairs:
        if name in PARAMETERS:
            values.setdefault(name, []).append(value)
        elif not lenient and name not in GENERAL:
            raise ExportRequestError(name, f"{name!r} is not a $export parameter this "
                                     f"server supports ({', '.join(PARAMETERS)}); send "
                                     "'Prefer: handling=lenient' to have it ignored")
    request = ExportRequest(kind, list(exportable(kind)), group_id=group_id)
    request.output_format = _output_format(values.get("_outputFormat", []))
    request.since = _since(values.get("_since", []))
    if "_type" in values:
        request.types = _types(kind, values["_type"])
        request.explicit_types = True
    request.type_filters = _type_filters(kind, values.get("_typeFilter", []), request)
    request.associated = _listed(values.get("includeAssociatedData", []),
                                 "includeAssociatedData", ASSOCIATED)
    request.pseudonymize = _pseudonymize(kind, values.get("pseudonymize", []))
    request.patients = _patients(kind, values.get("patient"))
    return request


def pairs_of_parameters(body: dict[str, Any]) -> list[tuple[str, str]]:
    """A POST kick-off's ``Parameters`` body as (name, value) pairs."""
    if body.get("resourceType") != "Parameters":
        raise ExportRequestError("resourceType", "a POST $export takes a Parameters resource")
    out = []
    for parameter in body.get("parameter") or []:
        name = parameter.get("name")
        value = next((v for k, v in parameter.items() if k.startswith("value")), None)
        if isinstance(value, dict) and isinstance(value.get("reference"), str):
            value = value["reference"]  # valueReference (the ``patient`` parameter)
        if not isinstance(name, str) or not isinstance(value, str | bool):
            raise ExportRequestError(str(name), f"parameter {name!r} needs a primitive value "
                                     "(valueString, valueInstant, valueCode...)")
        out.append((name, str(value).lower() if isinstance(value, bool) else value))
    return out


def _output_format(given: list[str]) -> str:
    if not given:
        return OUTPUT_FORMATS[0]
    value = given[-1].replace(" ", "+")
    if value not in OUTPUT_FORMATS:
        raise ExportRequestError("_outputFormat", f"_outputFormat {value!r} is not supported; "
                                 f"use one of {', '.join(OUTPUT_FORMATS)}")
    return OUTPUT_FORMATS[0]


def _since(given: list[str]) -> str | None:
    if not given:
        return None
    value = given[-1].replace(" ", "+")
    try:
        moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError as exc:
        raise ExportRequestError("_since", f"_since {value!r} is not a FHIR instant such as "
                                 "2026-01-01T00:00:00Z") from exc
    if moment.tzinfo is None or "T" not in value:
        raise ExportRequestError("_since", "_since must be an instant with a time and a "
                                 "time zone, such as 2026-01-01T00:00:00Z")
    return value


def _types(kind: str, given: list[str]) -> list[str]:
    names = [t.strip() for value in given for t in value.split(",") if t.strip()]
    allowed = exportable(kind)
    for name in names:
        if name not in allowed:
            where = "" if kind == "system" else " in a patient compartment"
            raise ExportRequestError("_type", f"_type {name!r} is not a resource type this "
                                     f"server exports{where}; known: {', '.join(allowed)}")
    return list(dict.fromkeys(names))


def _type_filters(kind: str, given: list[str], request: ExportRequest) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for value in given:
        rtype, mark, query = value.partition("?")
        if not mark or not query:
            raise ExportRequestError("_typeFilter", f"_typeFilter {value!r} must be "
                                     "<ResourceType>?<search query>")
        if rtype not in request.types:
            raise ExportRequestError("_typeFilter", f"_typeFilter names {rtype!r}, which "
                                     "this export does not include (see _type)")
        pairs = parse_qsl(query, keep_blank_values=True)
        if any(name.split(":")[0] in ("_count", "_cursor", "_sort", "_include",
                                      "_revinclude", "_summary", "_elements")
               for name, _ in pairs):
            raise ExportRequestError("_typeFilter", f"_typeFilter {value!r}: only search "
                                     "criteria are allowed (no paging, sort or includes)")
        try:
            make_plan(rtype, pairs, strict=True)
        except SearchError as exc:
            raise ExportRequestError("_typeFilter", f"_typeFilter {value!r}: "
                                     f"{_issues(exc.issues)}") from exc
        out.setdefault(rtype, []).append(query)
    return out


def _issues(issues: Iterable[dict[str, Any]]) -> str:
    return "; ".join(str(i.get("diagnostics", i.get("code"))) for i in issues) or "invalid"


def _listed(given: list[str], name: str, allowed: Sequence[str]) -> list[str]:
    values = [v.strip() for value in given for v in value.split(",") if v.strip()]
    for value in values:
        if value not in allowed:
            raise ExportRequestError(name, f"{name} {value!r} is not supported; supported: "
                                     f"{', '.join(allowed)}")
    return list(dict.fromkeys(values))


def _patients(kind: str, given: list[str] | None) -> list[str] | None:
    if given is None:
        return None
    if kind == "system":
        raise ExportRequestError("patient", "the patient parameter applies to Patient and "
                                 "Group exports")
    ids = []
    for value in given:
        kind_, _, id = value.strip().rpartition("/")
        if kind_.rpartition("/")[2] != "Patient" or not id:
            raise ExportRequestError("patient", f"patient {value!r} is not a reference to a "
                                     "Patient such as Patient/123")
        ids.append(id)
    return sorted(set(ids))


def _pseudonymize(kind: str, given: list[str]) -> str | None:
    values = _listed(given, "pseudonymize", PSEUDONYMIZE)
    value = values[0] if values else None
    if value is not None and kind != "group":
        raise ExportRequestError("pseudonymize", "pseudonymize=study applies to a study's "
                                 "export: GET /fhir/Group/{id}/$export")
    return value
