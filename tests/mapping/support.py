"""Helpers shared by the research, pseudonym, manifest and convert tests of the mapping."""

from __future__ import annotations

import json
from collections.abc import Iterable
from functools import cache
from typing import Any

import orjson
from jsonschema import Draft6Validator

from gateway.adapters.loader import Network, load_network
from gateway.fhir import validate
from gateway.hl7.parser import parse
from gateway.mapping import MappingResult, map_message
from tests.conftest import FHIR_SCHEMA

KEY = b"mapping-test-key-0123456789abcdef"
RECEIVED = "2026-11-27T10:00:00+01:00"


@cache
def network() -> Network:
    return load_network()


def hl7(*segments: str) -> str:
    """An ER7 message from segment strings (CR-separated, as on the wire)."""
    return "\r".join(segments) + "\r"


def convert(text: str, site_id: str | None = None, *, links: dict[str, str] | None = None,
            key: bytes = KEY, received: str = RECEIVED) -> MappingResult:
    """Map one message as the ingest does; ``links`` plays the node's link table (learned
    links are added to it, as the store would)."""
    msg = parse(text)
    net = network()
    site = net.sites[site_id] if site_id else net.site_for(msg.sending_facility)
    assert site is not None
    table = links if links is not None else {}
    result = map_message(msg, site, pseudonym_key=key, received=received,
                         studies=net.studies, lookup_link=table.get)
    table.update(result.new_links)
    return result


def by_type(result: MappingResult, resource_type: str) -> list[dict[str, Any]]:
    return [r for r in result.resources if r["resourceType"] == resource_type]


def one(result: MappingResult, resource_type: str) -> dict[str, Any]:
    found = by_type(result, resource_type)
    assert len(found) == 1, f"expected one {resource_type}, got {len(found)}"
    return found[0]


def dumps(obj: Any) -> bytes:
    return orjson.dumps(obj, option=orjson.OPT_SORT_KEYS)


@cache
def _definitions() -> dict[str, Any]:
    return dict(json.loads(FHIR_SCHEMA.read_text(encoding="utf-8"))["definitions"])


@cache
def _schema_validator(resource_type: str) -> Draft6Validator:
    return Draft6Validator({"$ref": f"#/definitions/{resource_type}",
                            "definitions": _definitions()})


def assert_valid(resources: Iterable[dict[str, Any]]) -> None:
    """Every resource validates with fhir.resources (R4B) and the official R4 JSON schema."""
    for resource in resources:
        validate(resource)
        errors = sorted(_schema_validator(resource["resourceType"]).iter_errors(resource),
                        key=str)
        assert not errors, f"{resource['resourceType']}: {errors[0].message}"
