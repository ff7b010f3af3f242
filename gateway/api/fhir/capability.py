"""The CapabilityStatement and the SearchParameter resources this server publishes.

Everything in it is read from what the server really does: the resource types and search
parameters of the store's registry (``gateway.store.search.params``), the interactions the
routes implement. The network's own parameters (e.g. ``research-study``) are published as
SearchParameter resources at ``/fhir/SearchParameter/<code>``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from gateway.fhir import FHIR_VERSION
from gateway.store import NETWORK_BASE, RESOURCE_TYPES, now_instant, search_parameters

from .outcomes import FhirError

SERVED_TYPES = ("Patient", "ResearchStudy", "ResearchSubject", "Specimen", "Observation",
                "Provenance", "Organization")
READ_ONLY_TYPES = ("SearchParameter",)
TYPE_INTERACTIONS = ("read", "vread", "update", "delete", "history-instance",
                     "history-type", "create", "search-type")
SYSTEM_INTERACTIONS = ("transaction", "batch", "history-system")
COMMON = ("_id", "_lastUpdated", "_tag", "_security", "_profile", "_source")
SOFTWARE = {"name": "plagencell-gateway", "version": "0.1.0"}
BULK_DATA_BASE = "http://hl7.org/fhir/uv/bulkdata/"
BULK_DATA = f"{BULK_DATA_BASE}CapabilityStatement/bulk-data"


@dataclass(frozen=True, slots=True)
class Param:
    """One search parameter as the capability shows it."""

    resource_type: str
    code: str
    type: str
    expression: str = ""
    description: str = ""
    targets: tuple[str, ...] = ()
    custom: bool = False  # the network's own (published as a SearchParameter resource)

    @property
    def definition(self) -> str:
        if self.custom:
            return f"{NETWORK_BASE}/{self.code}"
        return f"http://hl7.org/fhir/SearchParameter/{self.definition_id}"

    @property
    def definition_id(self) -> str:
        owner = "Resource" if self.code.startswith("_") else self.resource_type
        return f"{owner}-{self.code.lstrip('_')}"


def registry_params() -> list[Param]:
    """The store's search parameter registry as ``Param`` rows."""
    return [Param(rtype, d.name, d.type, d.expression, d.description, tuple(d.targets),
                  d.url.startswith(NETWORK_BASE))
            for rtype in RESOURCE_TYPES
            for d in search_parameters(rtype)]


class Capability:
    """What the server serves; built once from the registry."""

    def __init__(self, params: list[Param] | None = None,
                 others: Sequence[dict[str, Any]] = (),
                 security: Callable[[str], dict[str, Any]] | None = None,
                 operations: Mapping[str, Sequence[dict[str, str]]] | None = None) -> None:
        """``others``: CapabilityStatement.rest.resource entries of resource types that
        other routers serve under ``/fhir`` (e.g. the terminology's CodeSystem)."""
        self.params = params if params is not None else registry_params()
        self.others = list(others)
        self.security = security  # rest.security from the base URL (gateway.security)
        # operations other routers serve: resource type (or "" for the system level) →
        # CapabilityStatement ``operation`` entries ({name, definition})
        self.operations = dict(operations or {})
        self.types = tuple(sorted({*SERVED_TYPES, *(p.resource_type for p in self.params
                                                    if p.resource_type != "Resource")}))

    def serves(self, rtype: str) -> bool:
        return rtype in self.types or rtype in READ_ONLY_TYPES

    def writable(self, rtype: str) -> bool:
        return rtype in self.types

    def params_of(self, rtype: str) -> list[Param]:
        return [p for p in self.params if p.resource_type in (rtype, "Resource")]

    def custom(self) -> list[Param]:
        return [p for p in self.params if p.custom]

    # -- CapabilityStatement -------------------------------------------------------------------

    def statement(self, base: str) -> dict[str, Any]:
        out = self._statement(base)
        if self.security is not None:
            out["rest"][0]["security"] = self.security(base)
        return out

    def _statement(self, base: str) -> dict[str, Any]:
        return {
            "resourceType": "CapabilityStatement", "status": "active",
            "date": now_instant()[:10], "kind": "instance", "fhirVersion": FHIR_VERSION,
            "format": ["application/fhir+json", "json"],
            "software": SOFTWARE,
            "implementation": {"description": "Network FHIR API", "url": base},
            **({"instantiates": [BULK_DATA]} if self._bulk_data() else {}),
            "rest": [{"mode": "server",
                      "resource": [self._resource(t) for t in self.types]
                      + [self._search_parameter_resource(), *self.others],
                      "interaction": [{"code": c} for c in SYSTEM_INTERACTIONS],
                      **({"operation": list(self.operations[""])}
                         if self.operations.get("") else {})}],
        }

    def _bulk_data(self) -> bool:
        return any(op["definition"].startswith(BULK_DATA_BASE)
                   for ops in self.operations.values() for op in ops)

    def _resource(self, rtype: str) -> dict[str, Any]:
        return {
            "type": rtype, "profile": f"http://hl7.org/fhir/StructureDefinition/{rtype}",
            "interaction": [{"code": c} for c in TYPE_INTERACTIONS],
            "versioning": "versioned", "readHistory": True, "updateCreate": True,
            "conditionalCreate": True, "conditionalRead": "not-supported",
            "conditionalUpdate": True, "conditionalDelete": "single",
            "referencePolicy": ["literal", "logical"],
            "searchInclude": self._includes(rtype),
            "searchRevInclude": self._revincludes(rtype),
            "searchParam": [{"name": p.code, "definition": p.definition, "type": p.type,
                             **({"documentation": p.description} if p.description else {})}
                            for p in self.params_of(rtype)],
            **({"operation": list(self.operations[rtype])}
               if self.operations.get(rtype) else {}),
        }

    def _includes(self, rtype: str) -> list[str]:
        return sorted(f"{rtype}:{p.code}" for p in self.params
                      if p.resource_type == rtype and p.type == "reference")

    def _revincludes(self, rtype: str) -> list[str]:
        return sorted(f"{p.resource_type}:{p.code}" for p in self.params
                      if p.type == "reference" and p.resource_type != "Resource"
                      and (not p.targets or rtype in p.targets))

    def _search_parameter_resource(self) -> dict[str, Any]:
        return {"type": "SearchParameter", "interaction": [{"code": "read"},
                                                           {"code": "search-type"}]}

    # -- SearchParameter resources -------------------------------------------------------------

    def _published(self) -> list[Param]:
        """One custom parameter per code (its bases gathered)."""
        return list({p.code: p for p in self.custom()}.values())

    def _search_parameter(self, p: Param) -> dict[str, Any]:
        bases = sorted({q.resource_type for q in self.custom() if q.code == p.code})
        expression = " | ".join(dict.fromkeys(q.expression for q in self.custom()
                                              if q.code == p.code and q.expression))
        return _search_parameter(Param(p.resource_type, p.code, p.type, expression,
                                       p.description, p.targets, True), bases)

    def search_parameter(self, id: str, base: str) -> dict[str, Any]:
        for p in self._published():
            if p.code == id:
                return self._search_parameter(p)
        raise FhirError.of("not-found", f"SearchParameter/{id} is not known; the standard "
                           "parameters are defined by the FHIR specification")

    def search_parameters_bundle(self, base: str) -> dict[str, Any]:
        entries = [{"fullUrl": f"{base}/SearchParameter/{p.code}",
                    "resource": self._search_parameter(p), "search": {"mode": "match"}}
                   for p in self._published()]
        return {"resourceType": "Bundle", "type": "searchset", "total": len(entries),
                "link": [{"relation": "self", "url": f"{base}/SearchParameter"}],
                "entry": entries}


def _search_parameter(p: Param, bases: list[str]) -> dict[str, Any]:
    return {
        "resourceType": "SearchParameter", "id": p.code, "url": p.definition,
        "version": "1", "name": p.code.replace("-", "_"), "status": "active",
        "experimental": False, "publisher": "PLAGENCELL network",
        "description": p.description or f"search {p.code}", "code": p.code,
        "base": bases, "type": p.type, "expression": p.expression,
        "xpathUsage": "normal", **({"target": list(p.targets)} if p.targets else {}),
    }
