"""One request's facts → one AuditEvent (BALP): pure logic, no I/O."""

from __future__ import annotations

import base64

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gateway.audit.chain import columns
from gateway.audit.event import (
    EventBuilder,
    Facts,
    audit_event,
    interaction,
    scrub_query,
    system_facts,
)
from gateway.fhir import validate

KEY = b"k" * 32


def codes(method: str, path: str) -> tuple[list[str], str, list[str]]:
    found = interaction(method, path)
    return [code for _, code in found.codes], found.action, found.entities


@pytest.mark.parametrize(("method", "path", "subtype", "action", "entities"), [
    ("GET", "/fhir/Observation/o1", ["read"], "R", ["Observation/o1"]),
    ("GET", "/fhir/Observation/o1/_history/2", ["vread"], "R", ["Observation/o1/_history/2"]),
    ("GET", "/fhir/Observation/o1/_history", ["history-instance"], "R", ["Observation/o1"]),
    ("GET", "/fhir/Observation/_history", ["history-type"], "R", []),
    ("GET", "/fhir/_history", ["history-system"], "R", []),
    ("GET", "/fhir/Observation", ["search-type"], "E", []),
    ("POST", "/fhir/Observation/_search", ["search-type"], "E", []),
    ("GET", "/fhir", ["search-system"], "E", []),
    ("POST", "/fhir/Observation", ["create"], "C", []),
    ("PUT", "/fhir/Observation/o1", ["update"], "U", ["Observation/o1"]),
    ("PUT", "/fhir/Observation", ["update"], "U", []),
    ("DELETE", "/fhir/Observation/o1", ["delete"], "D", ["Observation/o1"]),
    ("POST", "/fhir", ["transaction"], "E", []),
    ("GET", "/fhir/metadata", ["capabilities"], "R", []),
    ("GET", "/fhir/ConceptMap/$translate", ["operation", "$translate"], "E", []),
    ("POST", "/fhir/ConceptMap/m1/$translate", ["operation", "$translate"], "E",
     ["ConceptMap/m1"]),
    ("POST", "/hl7v2", ["hl7v2-ingest"], "C", []),
    ("POST", "/admin/messages/7/replay", ["replay"], "E", ["inbox/7"]),
    ("GET", "/admin/messages", ["message-search"], "E", []),
    ("POST", "/auth/token", ["110122"], "E", []),
])
def test_the_interaction_follows_from_method_and_path(
        method: str, path: str, subtype: list[str], action: str, entities: list[str]) -> None:
    assert codes(method, path) == (subtype, action, entities)


def test_identity_parameters_are_hashed_and_others_kept() -> None:
    query = ("identifier=http://hospital|MRN0048213&name=ROSSI&subject.identifier=RSSMRA70A01A794X"
             "&_has:ResearchSubject:individual:identifier=X1&code=http://loinc.org|1988-5"
             "&birthdate=1970-01-01&_count=10")
    scrubbed = scrub_query(query, KEY)
    for secret in ("MRN0048213", "ROSSI", "RSSMRA70A01A794X", "X1", "1970-01-01"):
        assert secret not in scrubbed
    assert "code=http://loinc.org|1988-5" in scrubbed and "_count=10" in scrubbed
    assert scrubbed.count("hmac-sha256:") == 5
    # the same value always hashes the same (an auditor with the key can look one up)
    assert scrub_query("name=ROSSI", KEY) == scrub_query("name=ROSSI", KEY)
    assert scrub_query("name=ROSSI", KEY) != scrub_query("name=ROSSI", b"x" * 32)


def test_a_search_event_is_a_valid_balp_query_event_with_its_query_in_base64() -> None:
    facts = Facts("GET", "/fhir/Patient", "identifier=MRN0048213&_count=5", 200, "client-a",
                  "10.0.0.9", 1_764_000_000.5)
    event = audit_event(facts, node="hub-1", key=KEY)
    validate({**event, "id": "1"})  # the R4 model accepts it
    assert event["type"]["code"] == "rest" and event["action"] == "E"
    assert event["outcome"] == "0" and event["recorded"].endswith(".500Z")
    client, server = event["agent"]
    assert client["who"]["identifier"]["value"] == "client-a" and client["requestor"]
    assert client["network"] == {"address": "10.0.0.9", "type": "2"}
    assert server["type"]["coding"][0]["code"] == "110152"
    assert event["source"]["observer"]["identifier"]["value"] == "hub-1"
    [query] = event["entity"]
    assert query["role"]["code"] == "24"
    text = base64.b64decode(query["query"]).decode()
    assert text.startswith("/fhir/Patient?identifier=hmac-sha256:") and "MRN" not in text


def test_a_refused_read_is_a_minor_failure_naming_the_resource() -> None:
    facts = Facts("GET", "/fhir/Patient/p1", "", 403, "client-b", None, 1.0)
    event = audit_event(facts, node="n", key=KEY)
    validate({**event, "id": "2"})
    assert event["outcome"] == "4" and event["outcomeDesc"] == "HTTP 403"
    [patient] = event["entity"]
    assert patient["what"] == {"reference": "Patient/p1"}
    assert (patient["type"]["code"], patient["role"]["code"]) == ("1", "1")


def test_an_endpoint_adds_subtype_entities_and_query_through_request_state() -> None:
    details = {"subtype": "batch", "entity": ["Observation/o9"], "query": "name=SECRET"}
    event = audit_event(Facts("POST", "/fhir", "", 200, "c", None, 1.0, details),
                        node="n", key=KEY)
    assert [c["code"] for c in event["subtype"]] == ["batch"]
    assert event["entity"][0]["what"] == {"reference": "Observation/o9"}
    assert b"SECRET" not in base64.b64decode(event["entity"][1]["query"])


def test_a_server_error_is_a_serious_failure_and_a_reload_a_system_event() -> None:
    assert audit_event(Facts("GET", "/fhir/Patient", "", 500, "c"), node="n",
                       key=KEY)["outcome"] == "8"
    reload = audit_event(system_facts("reload", ok=True, when=1.0, description="reloaded"),
                         node="n", key=KEY)
    validate({**reload, "id": "3"})
    assert [c["code"] for c in reload["subtype"]] == ["reload"]
    assert reload["agent"][0]["who"]["identifier"]["value"] == "operator"

SEGMENT = st.sampled_from(["Patient", "Observation", "p1", "_history", "2", "_search",
                           "$translate", "metadata", "admin", "messages", "7", "replay"])
FACTS = st.builds(
    Facts, method=st.sampled_from(["GET", "POST", "PUT", "PATCH", "DELETE"]),
    path=st.lists(SEGMENT, max_size=4).map(lambda p: "/" + "/".join(["fhir", *p])),
    query=st.sampled_from(["", "name=X&code=a|b", "_count=3"]),
    status=st.sampled_from([200, 201, 304, 401, 403, 404, 500]),
    agent=st.sampled_from(["client-a", "anonymous", "unauthenticated"]),
    address=st.sampled_from([None, "10.1.2.3"]),
    when=st.floats(min_value=0, max_value=4_000_000_000, allow_nan=False),
    details=st.sampled_from([None, {"entity": ["Patient/p9", "inbox/3"]},
                             {"subtype": "batch"}]))


@given(FACTS)
def test_the_search_columns_built_with_an_event_are_those_its_content_gives(
        facts: Facts) -> None:
    event, built = EventBuilder("n", KEY).build(facts)
    assert columns(event) == built
