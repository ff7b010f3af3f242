"""``gateway.subscriptions.resource`` (pure) and the delivery options' backoff."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from gateway.subscriptions.resource import (
    FHIR_JSON,
    MAX_ERROR,
    SubscriptionError,
    bounded_error,
    ended,
    parse,
    scrub_reason,
)
from gateway.subscriptions.service import DeliveryOptions
from tests.subscriptions.support import subscription


def test_a_full_resource_subscription_reads_as_its_spec() -> None:
    spec = parse(subscription("https://receiver.example.org/hook", heartbeat=30,
                              headers=["Authorization: Bearer x", "X-Team:  a "],
                              status="active"))
    assert spec.resource_type == "Observation"
    assert spec.criteria == (("code", "http://loinc.org|1988-5"),)
    assert spec.payload == FHIR_JSON and spec.heartbeat == 30
    assert spec.headers == (("Authorization", "Bearer x"), ("X-Team", "a"))
    assert spec.status == "requested"  # the gateway activates


def test_no_payload_means_a_notification_without_body() -> None:
    assert parse(subscription("http://h/x", payload=None)).payload is None


@pytest.mark.parametrize(("endpoint", "hosts"), [
    ("ftp://h/x", None), ("file:///etc/passwd", None), ("/relative", None),
    ("http://user:pw@h/x", None), ("http://other.example.org/x", frozenset({"h"})),
])
def test_endpoints_outside_http_or_the_allow_list_are_refused(
        endpoint: str, hosts: frozenset[str] | None) -> None:
    with pytest.raises(SubscriptionError) as info:
        parse(subscription(endpoint), allowed_hosts=hosts)
    assert info.value.element == "Subscription.channel.endpoint"


def test_an_allowed_host_is_accepted_whatever_its_case() -> None:
    assert parse(subscription("https://H.example.org/x"),
                 allowed_hosts=frozenset({"h.example.org"})).endpoint


@pytest.mark.parametrize("header", ["Content-Type: text/plain", "Host: evil",
                                    "X-A: b\r\nX-B: c", "nocolon"])
def test_headers_the_gateway_sets_or_that_break_lines_are_refused(header: str) -> None:
    with pytest.raises(SubscriptionError) as info:
        parse(subscription("http://h/x", headers=[header]))
    assert info.value.element == "Subscription.channel.header[0]"


def test_a_heartbeat_must_be_a_positive_number_of_seconds() -> None:
    body = subscription("http://h/x", heartbeat=5)
    body["channel"]["extension"][0]["valueUnsignedInt"] = 0
    with pytest.raises(SubscriptionError):
        parse(body)


def test_reason_is_scrubbed_and_the_gateways_elements_are_not_kept() -> None:
    body = {**subscription("http://h/x"), "error": "x", "id": "y",
            "reason": "results of the patient with codice fiscale RSSMRA80A01F205X"}
    kept = scrub_reason(body)
    assert "RSSMRA80A01F205X" not in kept["reason"] and "[ID]" in kept["reason"]
    assert "error" not in kept and "id" not in kept


def test_an_error_is_scrubbed_and_bounded() -> None:
    error = bounded_error("HTTP 500 for RSSMRA80A01F205X " + "x" * 2000)
    assert "RSSMRA80A01F205X" not in error and len(error) == MAX_ERROR


def test_end_passes() -> None:
    now = datetime(2026, 12, 3, 12, tzinfo=UTC)
    assert ended("2026-12-03T11:59:59Z", now) and not ended("2026-12-04", now)
    assert not ended(None, now)


def test_backoff_doubles_up_to_its_bound() -> None:
    options = DeliveryOptions(min_backoff=0.5, max_backoff=4)
    assert [options.backoff(n) for n in range(1, 7)] == [0.5, 1, 2, 4, 4, 4]
