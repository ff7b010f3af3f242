"""Per-study and per-site access: which stored resources a restricted client may see.

``Restriction`` is the data restriction of one request, built from its ``Principal``
(``restriction_of``): ``None`` for an unrestricted caller, so that the store runs exactly
the SQL it runs without authentication. Every store read takes it as ``restrict=``
(``Store.read``, ``vread``, ``history``, ``history_versions``, ``search``;
``Transaction.search`` and ``Transaction.visible``) and applies it in SQL
(``gateway.store.restrict``), so paging, counts, sort and cursors stay exact and a
resource outside the restriction is absent: 404 on a read, missing from every search,
include, chain and ``_has``. New endpoints (Bulk ``$export``, ``$everything``,
ViewDefinitions) pass ``restriction_of(principal_of(request))`` the same way.

The rule (docs/security.md, "Per-study access"), for a client restricted to studies S:

| type | visible when |
|---|---|
| ResearchStudy | its id, or one of its identifier values, is in S |
| ResearchSubject | its ``study`` is a visible ResearchStudy |
| Patient | a visible ResearchSubject enrols it (``individual``) |
| Observation, Specimen | tagged (workflow-researchStudy): a tag names a visible study; |
| | untagged: its ``subject`` is a visible Patient |
| Provenance | it has targets and every target is visible |
| Group | a study's cohort Group (``meta.source`` ``urn:plagencell:cohort``) of a visible |
| | study; no other Group |
| Organization | always (the sites: reference data, no patient data) |
| any other type | never |

Restricted to sites T: a resource is visible when a Provenance whose ``agent`` is the
Organization of a site in T (identifier ``urn:plagencell:site|<site>``) targets it; such a
Provenance is itself visible; an Organization is always visible. With both, a resource
must pass both (AND).
"""

from __future__ import annotations

from dataclasses import dataclass

from gateway.security.principal import Principal

SITE_SYSTEM = "urn:plagencell:site"  # Organization.identifier of a site (mapping.organization)
REFERENCE_TYPES = frozenset({"Organization"})  # visible to every restricted client
STUDY_TYPES = frozenset({"ResearchStudy", "ResearchSubject", "Patient", "Observation",
                         "Specimen", "Provenance", "Group"})


@dataclass(frozen=True, slots=True)
class Restriction:
    """What one restricted caller may see. ``studies``: ResearchStudy ids or identifier
    values (``value`` or ``system|value``); ``sites``: site ids. ``None``: no restriction
    of that kind; an empty set: nothing of that kind."""

    studies: frozenset[str] | None = None
    sites: frozenset[str] | None = None

    def __post_init__(self) -> None:
        if self.studies is None and self.sites is None:
            raise ValueError("a Restriction restricts studies, sites or both; "
                             "an unrestricted caller has none (None)")

    def may_see_type(self, resource_type: str) -> bool:
        """Whether any resource of ``resource_type`` can be visible (cheap pre-check)."""
        return resource_type in REFERENCE_TYPES or resource_type in STUDY_TYPES

    def describe(self) -> str:
        """For diagnostics and logs: the counts, not the names."""
        parts = []
        if self.studies is not None:
            parts.append(f"{len(self.studies)} stud{'y' if len(self.studies) == 1 else 'ies'}")
        if self.sites is not None:
            parts.append(f"{len(self.sites)} site{'' if len(self.sites) == 1 else 's'}")
        return " and ".join(parts)


def restriction_of(principal: Principal) -> Restriction | None:
    """The restriction of a caller; ``None`` when it may see everything."""
    if principal.anonymous or not principal.restricted:
        return None
    return Restriction(studies=principal.studies, sites=principal.sites)


__all__ = ["REFERENCE_TYPES", "STUDY_TYPES", "Restriction", "restriction_of"]
