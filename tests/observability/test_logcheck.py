"""The session-wide log check (tests/logcheck.py, tests/conftest.py) itself: it collects the
identity strings from the PID fields of the samples and finds them in log records."""

from __future__ import annotations

import logging

from tests import logcheck


def test_identity_strings_come_from_the_pid_fields_of_the_samples() -> None:
    found = logcheck.identity_strings()
    # gateway/sites/samples/hpg23: PID-3 MRN and codice fiscale, PID-5 name, PID-7 birth date
    assert {"MRN0048213", "RSSMRA70A01A794X", "ROSSI", "MARIO", "19700101",
            "1970-01-01"} <= found
    assert not {"M", "1", "HPG23", "MR"} & found  # sex, set id, authority, type: not identity


def test_inline_test_messages_count_too_and_placeholders_do_not() -> None:
    assert logcheck.identity_of("PID|1||MRN123^^^HPG23^MR||Rossi^Mario||19800101|M") == {
        "MRN123", "Rossi", "Mario", "19800101", "1980-01-01"}
    assert logcheck.identity_of("PID|1||{mrn}^^^HPG23^MR||X^Y||1970|F") == set()


def test_a_log_record_with_an_identity_string_is_found_with_its_logger_and_position() -> None:
    capture = logcheck.Capture()
    log = logging.getLogger("gateway.test.logcheck")
    log.addHandler(capture)
    log.propagate = False  # planted values: not for the session's own check
    try:
        log.warning("message msh10#abc from site hpg23 not mapped")
        log.warning("PID-3 %s is not a known MRN", "MRN0048213")
    finally:
        log.removeHandler(capture)
        log.propagate = True
    capture.add_output("gateway serve (stderr)", "started\nROSSI^MARIO sent\n")
    findings = capture.findings(logcheck.identity_strings())
    assert [(f.where, f.position, f.value) for f in findings] == [
        ("gateway.test.logcheck", 1, "MRN0048213"), ("gateway serve (stderr)", 2, "ROSSI")]


def test_the_session_capture_sees_the_gateways_info_lines() -> None:
    assert logcheck.CAPTURE in logging.getLogger().handlers
    before = len(logcheck.CAPTURE.records)
    logging.getLogger("gateway.access").info("HTTP GET /fhir/{rtype}/{id} 200")
    assert logcheck.CAPTURE.records[before:] == [("gateway.access",
                                                  "HTTP GET /fhir/{rtype}/{id} 200")]
