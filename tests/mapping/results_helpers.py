"""Inline messages for the results-mapping tests: build, parse and map with map_results."""

from __future__ import annotations

from typing import Any

from gateway.adapters.site import FreeText, Privacy, Site
from gateway.hl7.parser import parse
from gateway.mapping.context import MappingContext
from gateway.mapping.results import map_results

SITE = Site(id="hpg23", name="HPG23", kind="hospital", facilities=["HPG23"])
KEY = b"test-pseudonym-key-0123456789abc"
SUBJECT = {"reference": "Patient/p1"}
MSH = "MSH|^~\\&|LIS|HPG23|GW|NET|20261127083015+0100||{type}|CTRL{n}|P|2.5.1"


def message(kind: str, *segments: str, n: int = 1) -> str:
    return "\r".join([MSH.format(type=kind, n=n), "PID|1||MRN1^^^HPG23^MR", *segments]) + "\r"


def mapped(text: str, site: Site = SITE) -> MappingContext:
    ctx = MappingContext(site=site, message=parse(text), pseudonym_key=KEY,
                         received="2026-11-27T08:30:20Z")
    map_results(ctx, SUBJECT)
    return ctx


def of_type(ctx: MappingContext, kind: str) -> list[dict[str, Any]]:
    return [r for (t, _), r in ctx.resources.items() if t == kind]


def with_free_text(mode: FreeText) -> Site:
    reason = "test: the raw text is compared" if mode == "keep" else None
    return SITE.model_copy(update={"privacy": Privacy(free_text=mode, free_text_reason=reason)})
