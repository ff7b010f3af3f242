"""The content hash the write path uses equals the hash of the stored form, for the shapes
that occur (no meta, volatile meta only, tags and profiles, with and without a source)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from gateway.store.content import content_hash, stored_hash, with_meta

SHAPES = [
    {"resourceType": "Patient", "id": "p1", "gender": "female"},
    {"resourceType": "Patient", "id": "p1", "meta": {}},
    {"resourceType": "Patient", "id": "p1", "meta": {"versionId": "3", "lastUpdated": "x"}},
    {"resourceType": "Observation", "id": "o1", "status": "final",
     "meta": {"tag": [{"system": "s", "code": "c"}], "profile": ["http://p"],
              "versionId": "7", "source": "urn:old"}},
    {"resourceType": "Specimen", "id": "s1", "meta": {"security": [{"code": "PSEUDED"}]}},
]


@pytest.mark.parametrize("source", [None, "urn:plagencell:node:edge-1"])
@pytest.mark.parametrize("resource", SHAPES, ids=lambda r: json.dumps(r)[:60])
def test_stored_hash_is_the_hash_of_the_stored_form(resource: dict[str, object],
                                                    source: str | None) -> None:
    assert stored_hash(resource, source) == content_hash(with_meta(resource, 0, "", source))


def test_stored_hash_tells_different_content_apart() -> None:
    a = {"resourceType": "Patient", "id": "p1", "gender": "female"}
    assert stored_hash(a) != stored_hash({**a, "gender": "male"})
    assert stored_hash(a, "urn:a") != stored_hash(a, "urn:b")


def test_stored_hash_agrees_on_every_mapped_sample() -> None:
    """Every resource of the shipped sites' expected bundles."""
    bundles = sorted(Path("gateway/sites").glob("**/*.json"))
    resources = [e["resource"] for b in bundles
                 for e in json.loads(b.read_text())["bundle"]["entry"]]
    assert len(resources) > 50
    for resource in resources:
        for source in (None, "urn:x"):
            assert stored_hash(resource, source) == content_hash(
                with_meta(resource, 0, "", source))
