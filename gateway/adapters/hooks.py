"""Python hooks for a site that truly needs code: the ``gateway.adapters`` entry point group.

A package declares, in its ``pyproject.toml``::

    [project.entry-points."gateway.adapters"]
    acme-lims = "acme_gateway.hooks:AcmeAdapter"

and the site file says ``adapter: acme-lims``. The object (a class is instantiated without
arguments) may define any of these methods; those it lacks are skipped:

    def before_mapping(self, raw: bytes, site: Site) -> bytes
        the inbound HL7 message before parsing (e.g. repair a broken MSH-18)
    def after_mapping(self, resources: list[dict], site: Site) -> list[dict]
        the mapped FHIR resources before they are stored (must keep ids deterministic)
    def lab_row(self, values: dict[str, str], site: Site) -> dict[str, str]
        one lab-export row (network column → text) before validation

Hooks must be pure functions of their arguments (no I/O, no clock), like the mapping. A
site naming an adapter that is not installed is refused at start-up (ConfigError).
"""

from __future__ import annotations

from functools import cache
from importlib.metadata import entry_points
from typing import Any

from gateway.adapters.site import Site
from gateway.errors import ConfigError

GROUP = "gateway.adapters"
Resource = dict[str, Any]


def available() -> dict[str, Any]:
    return {ep.name: ep for ep in entry_points(group=GROUP)}


@cache
def load_adapter(name: str) -> Any:
    found = available().get(name)
    if found is None:
        raise ConfigError(f"adapter {name!r} is not installed (entry point group {GROUP})",
                          field="adapter")
    target = found.load()
    return target() if isinstance(target, type) else target


def adapter_of(site: Site) -> Any | None:
    return load_adapter(site.adapter) if site.adapter else None


def before_mapping(site: Site, raw: bytes) -> bytes:
    hook = getattr(adapter_of(site), "before_mapping", None)
    return bytes(hook(raw, site)) if hook else raw


def after_mapping(site: Site, resources: list[Resource]) -> list[Resource]:
    hook = getattr(adapter_of(site), "after_mapping", None)
    return list(hook(resources, site)) if hook else resources


def lab_row(site: Site, values: dict[str, str]) -> dict[str, str]:
    hook = getattr(adapter_of(site), "lab_row", None)
    return dict(hook(dict(values), site)) if hook else values
