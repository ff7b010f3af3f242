"""Golden tests over ../shared/corpus: expected Observations/Specimens found in our output,
every emitted resource valid (official R4 JSON schema + fhir.resources R4B), determinism."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import jsonschema
import orjson
import pytest

from gateway.errors import InboundError
from gateway.fhir import validate
from gateway.hl7.parser import split_messages
from tests.conftest import FHIR_SCHEMA
from tests.golden.golden import Run, convert, pairs, run

# Measured by tests/golden/make_misses.py (519/538 on 2026-11-27: ADT OBX, PDA and ACC
# facts mapped, SN "-^1^-^3" a Range; MISSES.md lists every miss with its reason).
MEASURED_RATE = 0.9647
MARGIN = 0.002


@pytest.fixture(scope="session")
def golden(corpus: Path) -> Run:
    return run(corpus)


class SchemaValidators(dict[str, Any]):
    """One compiled Draft 6 validator per resource type, against the official R4 schema."""

    def __init__(self) -> None:
        super().__init__()
        self.definitions = json.loads(FHIR_SCHEMA.read_text(encoding="utf-8"))["definitions"]

    def __missing__(self, kind: str) -> Any:
        validator = jsonschema.Draft6Validator({"$ref": f"#/definitions/{kind}",
                                                "definitions": self.definitions})
        self[kind] = validator
        return validator


@pytest.fixture(scope="session")
def schema_validators() -> SchemaValidators:
    return SchemaValidators()


def test_the_corpus_has_golden_pairs_with_observations_and_specimens(corpus: Path) -> None:
    assert len(pairs(corpus)) > 150


def test_expected_observations_and_specimens_are_found_at_the_measured_rate(
        golden: Run) -> None:
    misses = [f"{o.expected.pair} {o.expected.kind}: {o.reason}"
              for o in golden.outcomes if not o.matched]
    assert golden.rate >= MEASURED_RATE - MARGIN, "\n".join(misses)


def test_misses_md_lists_exactly_the_current_misses(golden: Run) -> None:
    text = (Path(__file__).parents[1] / "golden" / "MISSES.md").read_text(encoding="utf-8")
    listed = sum(1 for line in text.splitlines()
                 if line.startswith(("| fhir-converter/", "| reportstream/", "| hl7-v2")))
    assert listed == sum(not o.matched for o in golden.outcomes), (
        "MISSES.md is stale: run .venv/bin/python tests/golden/make_misses.py")


def test_every_emitted_resource_validates_against_the_r4_schema_and_r4b_models(
        golden: Run, schema_validators: dict[str, Any]) -> None:
    checked = 0
    for pair, resources in golden.emitted.items():
        for resource in resources:
            errors = list(schema_validators[resource["resourceType"]].iter_errors(resource))
            assert not errors, f"{pair} {resource['resourceType']}: {errors[0].message}"
            validate(resource)
            checked += 1
    assert checked > 400


NOT_HL7 = (".json", ".fhir", ".csv", ".tsv", ".md")


def corpus_messages(corpus: Path) -> list[tuple[str, str]]:
    out = []
    for path in sorted(corpus.rglob("*")):
        if path.is_file() and path.suffix not in NOT_HL7 and not path.name.startswith(
                ("LICENSE", "MANIFEST")):
            out += [(str(path.relative_to(corpus)), m)
                    for m in split_messages(path.read_bytes())]
    return out


def test_every_corpus_message_maps_validly_or_is_refused_at_a_position(
        corpus: Path, schema_validators: SchemaValidators) -> None:
    mapped = refused = 0
    for name, text in corpus_messages(corpus):
        try:
            resources = convert(text.encode())
        except InboundError as exc:
            assert exc.location is not None, f"{name}: {exc} names no position"
            refused += 1
            continue
        for resource in resources:
            if resource["resourceType"] in ("Observation", "Specimen"):
                errors = list(schema_validators[resource["resourceType"]].iter_errors(resource))
                assert not errors, f"{name} {resource['resourceType']}: {errors[0].message}"
                validate(resource)
        mapped += 1
    assert mapped > 600 and refused < 10


def test_the_same_message_maps_to_byte_identical_resources(corpus: Path) -> None:
    for input_hl7, _ in pairs(corpus)[::7]:
        data = (corpus / input_hl7).read_bytes()
        assert orjson.dumps(convert(data)) == orjson.dumps(convert(data)), input_hl7
