"""docs/fhir-api.md lists every search parameter the server publishes, with an example."""

from __future__ import annotations

from pathlib import Path

from gateway.store.search import params as registry

DOC = Path(__file__).resolve().parents[2] / "docs" / "fhir-api.md"


def test_every_search_parameter_has_an_example_request_in_the_docs():
    text = DOC.read_text()
    missing = [f"{rtype}?{d.name}" for rtype in registry.RESOURCE_TYPES
               for d in registry.search_parameters(rtype)
               if f"`GET /fhir/{rtype}?{d.name}=" not in text]
    assert missing == []
