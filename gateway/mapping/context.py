"""What every mapping function receives, and what it collects.

Mapping is pure: no I/O, no clock, no globals. Everything a builder needs from the outside
(the site, the studies catalogue, the pseudonym key, the identifier links the node already
knows, the time the message was received) comes in through ``MappingContext``; everything
it produces (resources, new identifier links, report entries) goes out through it.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

from gateway.adapters.site import Site
from gateway.errors import BudgetExceeded
from gateway.hl7.parser import Message

MAPPING_VERSION = "2026.11.1"
PSEUDONYM_SYSTEM = "urn:plagencell:pseudonym:v1"
SECURITY_PSEUDED = {
    "system": "http://terminology.hl7.org/CodeSystem/v3-ObservationValue",
    "code": "PSEUDED",
    "display": "pseudonymized",
}
STUDY_EXTENSION = "http://hl7.org/fhir/StructureDefinition/workflow-researchStudy"

Resource = dict[str, Any]


def resource_id(resource_type: str, site: str, *natural_key: str) -> str:
    """Deterministic, FHIR-id-safe id: sha256(type | site | natural key), 64 hex chars."""
    text = "|".join((resource_type, site, *natural_key))
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


@lru_cache(maxsize=8)
def _keyed(key: bytes) -> hmac.HMAC:
    """An HMAC-SHA256 primed with ``key``, copied for every pseudonym (same digest as
    ``hmac.new(key, text, sha256)``, without re-deriving the inner and outer pads)."""
    return hmac.new(key, digestmod=hashlib.sha256)


@dataclass(slots=True)
class ReportEntry:
    """One finding of the conversion report; ``location`` is a position, never a value."""

    severity: str  # fatal | error | warning | information
    code: str  # OperationOutcome.issue.code: not-supported, code-invalid, not-found, value…
    location: str  # e.g. "OBX[3]-3.1" (segment, 1-based occurrence, field, component)
    diagnostics: str

    def as_issue(self) -> dict[str, Any]:
        return {"severity": self.severity, "code": self.code,
                "diagnostics": self.diagnostics, "location": [self.location]}


def report_outcome(entries: list[ReportEntry]) -> Resource:
    """The conversion report as an OperationOutcome."""
    issues = [e.as_issue() for e in entries] or [
        {"severity": "information", "code": "informational", "diagnostics": "no findings"}]
    return {"resourceType": "OperationOutcome", "issue": issues}


@dataclass(slots=True)
class MappingContext:
    site: Site
    message: Message
    pseudonym_key: bytes
    received: str  # ISO 8601 instant the message was received (Provenance.recorded)
    studies: Mapping[str, Any] = field(default_factory=dict)  # network studies catalogue
    lookup_link: Callable[[str], str | None] = lambda _key: None  # identifier hash → pseudonym
    resources: dict[tuple[str, str], Resource] = field(default_factory=dict)
    new_links: dict[str, str] = field(default_factory=dict)
    report: list[ReportEntry] = field(default_factory=list)
    # (type, id) of resources the store writes only when it has none yet (implicit
    # ResearchSubjects from CTI, reference stubs): they must not overwrite richer versions.
    create_only: set[tuple[str, str]] = field(default_factory=set)
    # natural key → how many resources of this message already carry it (ordinals of
    # repeated keys: one dict lookup each, not a walk over the ids taken so far)
    ordinals: dict[tuple[str, ...], int] = field(default_factory=dict)
    # called between segments and resources: the caller's time budget raises from here
    # (the mapping itself reads no clock)
    checkpoint: Callable[[], None] = lambda: None
    max_resources: int | None = None  # more resources than this: BudgetExceeded

    def rid(self, resource_type: str, *natural_key: str) -> str:
        return resource_id(resource_type, self.site.id, *natural_key)

    def pseudonym(self, *parts: str) -> str:
        """Keyed HMAC-SHA256 of identifying parts (64 hex chars): pseudonyms for patients,
        and the hashed form of order, visit and specimen numbers that must not travel in clear."""
        mac = _keyed(self.pseudonym_key).copy()  # the key schedule is computed once per key
        mac.update("|".join(parts).encode("utf-8"))
        return mac.hexdigest()

    def add(self, resource: Resource) -> Resource:
        """Collect a resource; a later one with the same type and id replaces the earlier."""
        key = (resource["resourceType"], resource["id"])
        limit = self.max_resources
        if limit is not None and len(self.resources) >= limit and key not in self.resources:
            raise BudgetExceeded(
                f"the message maps to more than {limit} resources, more than one message may "
                "write (--max-resources-per-message); split it (stored for replay)",
                budget="resources", segment="MSH", field=10)
        self.resources[key] = resource
        return resource

    def warn(self, location: str, diagnostics: str, code: str = "value") -> None:
        self.report.append(ReportEntry("warning", code, location, diagnostics))

    def info(self, location: str, diagnostics: str, code: str = "informational") -> None:
        self.report.append(ReportEntry("information", code, location, diagnostics))
