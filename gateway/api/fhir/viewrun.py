"""The parameters of ``$viewdefinition-run`` (SQL-on-FHIR v2 OperationDefinition
ViewDefinitionRun), read from a ``Parameters`` body and the query string, checked before
anything runs: every problem is a 400 OperationOutcome whose ``expression`` names the
parameter (``viewResource.select[0].column[1].path`` for a problem inside a view).

| parameter | taken as |
|---|---|
| ``viewResource`` | an inline ViewDefinition (``resource``; POST only) |
| ``viewReference`` | ``ViewDefinition/{id}`` (relative or on this base) or a stored ``url`` |
| ``_format`` | ``json``, ``ndjson`` (the default), ``csv``, or their media types; else ``Accept`` |
| ``header`` | CSV header line (default true) |
| ``patient`` | ``Patient/{id}`` or ``{id}``: only that patient's compartment |
| ``group`` | ``Group/{id}`` (repeatable): only the members' compartments |
| ``_since`` | a FHIR instant: only resources modified since |
| ``_limit`` | at most this many rows |
| ``resource`` | inline resources to run over instead of the server's (repeatable; POST only) |

``source`` (an external data source) and ``parquet`` are not offered (400 naming them).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from gateway.views.output import ALIASES

from .outcomes import FhirError
from .routes import _since

SINGLE = ("viewResource", "viewReference", "_format", "header", "patient", "_since",
          "_limit", "source")
REPEATED = ("group", "resource")
MAX_INLINE = 10_000  # inline resources per request (a development aid, not a bulk path)


@dataclass
class RunRequest:
    view: dict[str, Any] | None = None  # viewResource
    reference: str | None = None  # viewReference
    format: str = "ndjson"
    header: bool = True
    patient: str | None = None  # a Patient id
    groups: list[str] = field(default_factory=list)  # Group ids
    since: str | None = None
    limit: int | None = None
    resources: list[dict[str, Any]] | None = None  # None: the server's data

    def audit_query(self) -> str:
        """What the audit event records of the request (no view, no inline data)."""
        parts = [("viewReference", self.reference), ("_format", self.format),
                 ("patient", f"Patient/{self.patient}" if self.patient else None),
                 *(("group", f"Group/{g}") for g in self.groups),
                 ("_since", self.since), ("_limit", str(self.limit) if self.limit else None),
                 ("resource", str(len(self.resources)) if self.resources is not None
                  else None)]
        return "&".join(f"{k}={v}" for k, v in parts if v)


def _invalid(message: str, name: str) -> FhirError:
    return FhirError.of("invalid", message, status=400, expression=[name])


def collect(body: dict[str, Any] | None, query: list[tuple[str, str]]
            ) -> dict[str, list[Any]]:
    """Parameter name → the values given (body ``parameter`` entries, then the query)."""
    given: dict[str, list[Any]] = {}
    if body is not None:
        if body.get("resourceType") != "Parameters":
            raise _invalid("the body of $viewdefinition-run is a Parameters resource",
                           "resourceType")
        entries = body.get("parameter") or []
        if not isinstance(entries, list):
            raise _invalid("Parameters.parameter must be a list", "parameter")
        for i, entry in enumerate(entries):
            name = entry.get("name") if isinstance(entry, dict) else None
            if not isinstance(name, str):
                raise _invalid(f"parameter[{i}] has no name", f"parameter[{i}].name")
            given.setdefault(name, []).append(_value(entry))
    for name, value in query:
        given.setdefault(name, []).append(value)
    return given


def _value(entry: dict[str, Any]) -> Any:
    if "resource" in entry:
        return entry["resource"]
    values = [v for k, v in entry.items() if k.startswith("value")]
    return values[0] if len(values) == 1 else None


def read_run(given: dict[str, list[Any]], accept: str | None, *, instance: str | None
             ) -> RunRequest:
    """The checked request; ``instance``: the id of ``ViewDefinition/{id}/$...``."""
    unknown = sorted(set(given) - set(SINGLE) - set(REPEATED))
    if unknown:
        raise _invalid(f"$viewdefinition-run has no parameter {unknown[0]!r}", unknown[0])
    for name in SINGLE:
        if len(given.get(name, [])) > 1:
            raise _invalid(f"{name} may be given once", name)
    one = {name: given[name][0] for name in SINGLE if name in given}
    if "source" in one:
        raise FhirError.of("not-supported", "external data sources (source) are not "
                           "offered: the view runs over this server's data or inline "
                           "resources", status=400, expression=["source"])
    run = RunRequest(format=_format(one.get("_format"), accept),
                     header=_boolean(one.get("header", True), "header"),
                     since=_since(_text(one.get("_since"), "_since")),
                     limit=_limit(one.get("_limit")))
    _view_source(run, one, instance)
    patient = _text(one.get("patient"), "patient", reference=True)
    run.patient = _id_of(patient, "Patient", "patient") if patient else None
    run.groups = [_id_of(_text(g, "group", reference=True) or "", "Group", "group")
                  for g in given.get("group", [])]
    if "resource" in given:
        run.resources = _inline(given["resource"])
    return run


def _view_source(run: RunRequest, one: dict[str, Any], instance: str | None) -> None:
    view, reference = one.get("viewResource"), one.get("viewReference")
    if instance is not None and (view is not None or reference is not None):
        name = "viewResource" if view is not None else "viewReference"
        raise _invalid(f"ViewDefinition/{instance}/$viewdefinition-run runs that view: "
                       f"{name} is not taken here", name)
    if view is not None and reference is not None:
        raise _invalid("give viewResource or viewReference, not both", "viewReference")
    if instance is None and view is None and reference is None:
        raise FhirError.of("required", "viewResource or viewReference is required",
                           status=400, expression=["viewResource"])
    if view is not None and not isinstance(view, dict):
        raise _invalid("viewResource is an inline ViewDefinition resource", "viewResource")
    run.view = view
    run.reference = instance if instance is not None else \
        _text(reference, "viewReference", reference=True)


def _text(value: Any, name: str, *, reference: bool = False) -> str | None:
    if value is None:
        return None
    if reference and isinstance(value, dict):
        value = value.get("reference")
    if not isinstance(value, str) or not value.strip():
        raise _invalid(f"{name} must be a {'reference' if reference else 'text'} value",
                       name)
    return value.strip()


def _id_of(reference: str, rtype: str, name: str) -> str:
    parts = reference.rstrip("/").split("/")
    if len(parts) == 1 or (len(parts) >= 2 and parts[-2] == rtype):
        return parts[-1]
    raise _invalid(f"{name} must be {rtype}/[id]", name)


def _format(value: Any, accept: str | None) -> str:
    if value is None:
        for part in (accept or "").split(","):
            kind = ALIASES.get(part.split(";")[0].strip().lower())
            if kind:
                return kind
        return "ndjson"
    kind = ALIASES.get(str(value).strip().lower()) if isinstance(value, str) else None
    if kind is None:
        hint = " (parquet is not offered here)" if str(value).lower() == "parquet" else ""
        raise FhirError.of("not-supported", f"_format {value!r} is not supported{hint}; "
                           "use json, ndjson or csv", status=400, expression=["_format"])
    return kind


def _boolean(value: Any, name: str) -> bool:
    if isinstance(value, bool):
        return value
    if value in ("true", "false"):
        return bool(value == "true")
    raise _invalid(f"{name} must be true or false", name)


def _limit(value: Any) -> int | None:
    if value is None:
        return None
    if isinstance(value, str) and value.isdigit():
        value = int(value)
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise _invalid("_limit must be a positive integer", "_limit")
    return value


def _inline(values: list[Any]) -> list[dict[str, Any]]:
    if len(values) > MAX_INLINE:
        raise _invalid(f"at most {MAX_INLINE} inline resources", "resource")
    for i, value in enumerate(values):
        if not isinstance(value, dict) or not isinstance(value.get("resourceType"), str):
            raise _invalid(f"resource[{i}] is not a FHIR resource", "resource")
    return values
