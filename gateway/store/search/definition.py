"""What a search parameter is (``ParamDef``) and how the registry's tables declare one
(``p``); the tables themselves are ``gateway.store.search.params`` and, for Observation,
``gateway.store.search.observation``."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

SEARCH_TYPES = ("token", "string", "date", "reference", "quantity", "uri", "number",
                "composite")


@dataclass(frozen=True, slots=True)
class ParamDef:
    name: str
    type: str  # one of SEARCH_TYPES
    expression: str  # R4 FHIRPath, as published
    description: str
    paths: tuple[str, ...] = ()
    targets: tuple[str, ...] = ()  # reference target types
    where: Callable[[Any], bool] | None = None
    components: tuple[str, str] = ("", "")  # composite: the two parts' types
    extract: Callable[[Any], list[Any]] | None = None  # instead of ``paths``
    single: bool = False  # at most one value per resource (a date: sorts via its index)
    url: str = ""  # canonical SearchParameter URL
    base: tuple[str, ...] = ()  # resource types, filled in by the registry
    reads: tuple[str, ...] = ()  # ``extract``: the top-level elements it needs (any of)


def p(name: str, type_: str, expression: str, description: str, *paths: str,
      targets: tuple[str, ...] = (), where: Callable[[Any], bool] | None = None,
      components: tuple[str, str] = ("", ""),
      extract: Callable[[Any], list[Any]] | None = None, single: bool = False,
      reads: tuple[str, ...] = ()) -> ParamDef:
    return ParamDef(name, type_, expression, description, paths, targets, where, components,
                    extract, single, reads=reads)


ANY = ("Account", "Device", "Group", "Location", "Organization", "Patient", "Practitioner",
       "PractitionerRole", "RelatedPerson", "ResearchStudy", "ResearchSubject", "Specimen",
       "Observation", "Provenance")
