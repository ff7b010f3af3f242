"""Terminology resources: each site's code map as a ConceptMap, the network CodeSystem,
and ``$translate`` over them. Pure functions of the site files (no store)."""

from __future__ import annotations

from collections import defaultdict
from functools import cache
from pathlib import Path
from typing import Any

import yaml

from gateway.adapters.site import Site

Resource = dict[str, Any]
CONCEPTMAP_BASE = "https://plagencell.example.org/fhir/ConceptMap"
CODESYSTEM_FILE = Path(__file__).resolve().parent.parent / "sites" / "codesystem-cgt-lab.yaml"


@cache
def network_codesystem(path: Path = CODESYSTEM_FILE) -> Resource:
    """The network CodeSystem ``cgt-lab`` as a FHIR resource dict."""
    data: Resource = yaml.safe_load(path.read_text(encoding="utf-8"))
    return data


def concept_map_id(site: Site) -> str:
    return f"{site.id}-lab"


def _element(local: str, target: Any) -> Resource:
    concept: Resource = {"code": target.code, "equivalence": "equivalent"}
    if target.display:
        concept["display"] = target.display
    return {"code": local, "target": [concept]}


def site_concept_map(site: Site) -> Resource:
    """The site's ``code_map`` as a ConceptMap: one group per target system."""
    groups: dict[str, list[Resource]] = defaultdict(list)
    for local, target in sorted(site.code_map.items()):
        groups[target.system].append(_element(local, target))
    return {
        "resourceType": "ConceptMap",
        "id": concept_map_id(site),
        "url": f"{CONCEPTMAP_BASE}/{concept_map_id(site)}",
        "name": f"LabCodes{site.id.title().replace('-', '')}",
        "title": f"Local laboratory codes of {site.name}",
        "status": "active",
        "sourceUri": site.local_system,
        "group": [{"source": site.local_system, "target": system, "element": elements}
                  for system, elements in sorted(groups.items())],
    }


def _matches(concept_map: Resource, system: str | None, code: str,
             target: str | None) -> list[Resource]:
    found = []
    for group in concept_map.get("group", []):
        if system and group["source"] != system or target and group["target"] != target:
            continue
        for element in group["element"]:
            if element["code"] != code:
                continue
            for concept in element["target"]:
                coding = {"system": group["target"], "code": concept["code"]}
                if "display" in concept:
                    coding["display"] = concept["display"]
                found.append({"name": "match", "part": [
                    {"name": "equivalence", "valueCode": concept["equivalence"]},
                    {"name": "concept", "valueCoding": coding},
                    {"name": "source", "valueUri": concept_map["url"]}]})
    return found


def translate(concept_maps: list[Resource], code: str, system: str | None = None,
              target: str | None = None) -> Resource:
    """``$translate`` result (a Parameters resource) over ``concept_maps``."""
    matches = [m for cm in concept_maps for m in _matches(cm, system, code, target)]
    message = f"{len(matches)} match(es)" if matches else "no mapping for this code"
    return {"resourceType": "Parameters", "parameter": [
        {"name": "result", "valueBoolean": bool(matches)},
        {"name": "message", "valueString": message}, *matches]}
