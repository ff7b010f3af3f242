"""Acknowledgments per HL7 v2.5.1 chapter 2: MSH swap, MSA, ERR, modes, corpus round trip."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest

from gateway.errors import InboundError, MappingError, ParseError, UnknownSite
from gateway.hl7.ack import (
    AckHeader,
    ack_plan,
    build_acks,
    encode_ack,
    outcome_of,
    oversize_error,
    render_ack,
)
from gateway.hl7.parser import parse, split_messages

TS = datetime(2026, 11, 27, 10, 15, 0, tzinfo=UTC)
# Fields that matter: MSH-3/4 (sender), MSH-5/6 (receiver), MSH-9 trigger, MSH-10, 11, 12, 18.
ORU = ("MSH|^~\\&|LIS|HPG23^2.16.840.1.113883.2.9^ISO|GATEWAY|NETWORK|20261127101000||"
       "ORU^R01^ORU_R01|MSG00042|P|2.5.1|||||ITA|UNICODE UTF-8\rPID|1||123^^^HPG23^MR\r")


def segs(text: str) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for line in text.split("\r"):
        if line:
            out.setdefault(line[:3], []).append(line)
    return out


def ack_of(msg: str, code: str = "AA", errors: tuple[InboundError, ...] = ()) -> str:
    return render_ack(AckHeader.from_message(parse(msg)), code, errors,
                      control_id="ACK0001", timestamp=TS)


def test_the_ack_swaps_sender_and_receiver_and_echoes_processing_id_version_charset() -> None:
    ack = parse(ack_of(ORU))
    assert ack.msh.raw(3) == "GATEWAY" and ack.msh.raw(4) == "NETWORK"
    assert ack.msh.raw(5) == "LIS" and ack.msh.raw(6) == "HPG23^2.16.840.1.113883.2.9^ISO"
    assert ack.msh.raw(7) == "20261127101500+0000"
    assert ack.msh.raw(9) == "ACK^R01^ACK" and ack.control_id == "ACK0001"
    assert ack.msh.raw(11) == "P" and ack.version == "2.5.1"
    assert ack.msh.raw(15) == "" and ack.msh.raw(16) == "" and ack.msh.raw(18) == "UNICODE UTF-8"


def test_msa_carries_the_code_and_the_original_control_id() -> None:
    ack = parse(ack_of(ORU, "AA"))
    assert ack.get("MSA-1") == "AA" and ack.get("MSA-2") == "MSG00042"
    assert ack.segment("ERR") is None


def test_an_error_becomes_an_err_with_location_code_severity_and_a_user_message() -> None:
    err = MappingError("OBX-5 is not a number (NM); use a comparator like <0.5",
                       segment="OBX", sequence=3, field=5, component=1)
    text = ack_of(ORU, "AE", (err,))
    err_seg = parse(text).segment("ERR")
    assert err_seg is not None
    assert err_seg.raw(1) == ""  # ERR-1 is for v2.3/v2.4 receivers only
    assert err_seg.raw(2) == "OBX^3^5^1^1"
    assert err_seg.raw(3) == "102^Data type error^HL70357"
    assert err_seg.raw(4) == "E"
    assert err_seg.get(8) == "OBX-5 is not a number (NM); use a comparator like <0.5"


def test_delimiters_in_the_user_message_are_escaped() -> None:
    err = InboundError("MSH-9 must look like ORU^R01|x", segment="MSH", field=9, code="200",
                       ack_code="AR")
    err_seg = parse(ack_of(ORU, "AR", (err,))).segment("ERR")
    assert err_seg is not None and "\\S\\" in err_seg.raw(8) and "\\F\\" in err_seg.raw(8)
    assert err_seg.get(8) == "MSH-9 must look like ORU^R01|x"


def test_one_err_segment_per_error() -> None:
    errors = (UnknownSite("MSH-4 names no configured site", segment="MSH", field=4),
              MappingError("PID-3 missing", segment="PID", field=3, code="101"))
    assert len(segs(ack_of(ORU, "AR", errors))["ERR"]) == 2


def test_a_five_character_msh2_is_kept_in_the_ack() -> None:
    msg = ORU.replace("^~\\&", "^~\\&#", 1)
    ack = parse(ack_of(msg))
    assert ack.msh.raw(2) == "^~\\&#" and ack.enc.truncation == "#"
    assert ack.get("MSA-2") == "MSG00042"


def test_other_delimiters_are_used_throughout_the_ack() -> None:
    msg = "MSH!$*/%!LIS!HPG23$X!GW!NET!2026!!ORU$R01$ORU_R01!Q1!P!2.5.1\rPID!1\r"
    err = MappingError("PID-3 missing", segment="PID", field=3, code="101")
    text = ack_of(msg, "AE", (err,))
    assert text.startswith("MSH!$*/%!GW!NET!LIS!HPG23$X!")
    assert "ACK$R01$ACK" in text and "ERR!!PID$1$3$1!101$Required field missing$HL70357!E" in text


def test_version_2_3_gets_err_1_and_msa_3_and_no_message_structure() -> None:
    msg = "MSH|^~\\&|LIS|HPG23|GW|NET|2026||ADT^A01|C23|P|2.3\rPID|1\r"
    err = MappingError("PID-3 missing", segment="PID", field=3, code="101")
    ack = parse(ack_of(msg, "AE", (err,)))
    assert ack.msh.raw(9) == "ACK^A01"
    assert ack.get("MSA-3") == "PID-3 missing"
    err_seg = ack.segment("ERR")
    assert err_seg is not None
    assert err_seg.raw(1) == "PID^1^3^101&Required field missing&HL70357"
    assert err_seg.raw(3) == "101^Required field missing^HL70357"


def test_a_header_is_recovered_from_bytes_that_do_not_parse() -> None:
    raw = b"\x00\xff junk MSH|^~\\&|LIS|HPG23|GW|NET|2026||ORU^R01|R9|P|2.4\rgarbage"
    header = AckHeader.from_raw(raw)
    assert (header.sending_facility, header.control_id, header.version) == ("HPG23", "R9", "2.4")
    ack = parse(render_ack(header, "AR", (ParseError("bad", segment="MSH"),),
                           control_id="X1", timestamp=TS))
    assert ack.get("MSA-2") == "R9" and ack.msh.raw(6) == "HPG23"


@pytest.mark.parametrize("raw", [b"", b"\x0b\x1c", b"MSH", b"MSHA", b"hello world",
                                 b"MSH|\r|", b"MSH|^~\\&",
                                 # found by the fuzzer: "MSH" alone on its line (IndexError)
                                 b"MSH\r\"|^~\\&|APP|HPG23|GW|NET|2019||ADT^A40|8919-40|P\r"])
def test_hopeless_bytes_still_give_a_parseable_ar(raw: bytes) -> None:
    header = AckHeader.from_raw(raw)
    ack = parse(render_ack(header, "AR", (ParseError("no MSH", segment="MSH"),),
                           control_id="X2", timestamp=TS))
    assert ack.get("MSA-1") == "AR" and ack.msh.raw(2) == "^~\\&"


def test_original_mode_sends_one_application_ack() -> None:
    header = AckHeader.from_message(parse(ORU))
    assert [ack_plan(header, o) for o in ("AA", "AE", "AR")] == [["AA"], ["AE"], ["AR"]]


@pytest.mark.parametrize(("msh15", "msh16", "outcome", "plan"), [
    ("AL", "AL", "AA", ["CA", "AA"]),
    ("AL", "AL", "AE", ["CA", "AE"]),   # stored as an error: committed, then AE
    ("AL", "AL", "AR", ["CR"]),         # rejected: no application ACK follows a CR
    ("AL", "NE", "AA", ["CA"]),
    ("NE", "AL", "AA", ["AA"]),
    ("NE", "NE", "AA", []),
    ("ER", "AL", "AA", ["AA"]),
    ("ER", "ER", "AE", ["AE"]),         # stored (no CA under ER), the application error is sent
    ("ER", "ER", "AR", ["CR"]),
    ("SU", "ER", "AE", ["CA", "AE"]),
    ("SU", "ER", "AR", ["AR"]),         # SU forbids a commit reject: the AR is sent instead
    ("NE", "NE", "AR", []),
    ("AL", "", "AA", ["CA"]),           # an empty MSH-16 next to MSH-15 counts as NE
])
def test_enhanced_mode_plans_follow_msh15_and_msh16(msh15: str, msh16: str, outcome: str,
                                                     plan: list[str]) -> None:
    msg = ORU.replace("|2.5.1|||||", f"|2.5.1|||{msh15}|{msh16}|", 1)
    assert ack_plan(AckHeader.from_message(parse(msg)), outcome) == plan


def test_an_overloaded_gateway_answers_commit_error_in_enhanced_mode() -> None:
    msg = ORU.replace("|2.5.1|||||", "|2.5.1|||AL|AL|", 1)
    assert ack_plan(AckHeader.from_message(parse(msg)), "AE", retriable=True) == ["CE"]


def test_build_acks_sends_no_err_on_the_commit_accept_and_fresh_control_ids() -> None:
    msg = ORU.replace("|2.5.1|||||", "|2.5.1|||AL|AL|", 1)
    err = MappingError("OBX-3 unknown code", segment="OBX", field=3, code="103")
    commit, app = build_acks(AckHeader.from_message(parse(msg)), [err], timestamp=TS)
    assert "ERR" not in commit and "ERR|" in app
    assert parse(commit).control_id != parse(app).control_id


def test_outcome_is_the_worst_ack_code_among_errors_and_warnings_do_not_count() -> None:
    warn = MappingError("unit not UCUM", segment="OBX", field=6)
    warn.severity = "W"
    assert outcome_of([]) == "AA" and outcome_of([warn]) == "AA"
    assert outcome_of([MappingError("x"), UnknownSite("y")]) == "AR"


def test_oversize_error_is_an_ar_at_the_msh() -> None:
    err = oversize_error(10 * 2**20)
    assert err.ack_code == "AR" and err.location is not None and err.location.segment == "MSH"


def test_encode_ack_uses_the_declared_charset() -> None:
    assert encode_ack("MSH|é", "8859/1") == "MSH|é".encode("latin-1")
    assert encode_ack("MSH|é", "UNICODE UTF-8") == "MSH|é".encode()
    assert encode_ack("MSH|é", "ASCII") == b"MSH|?"


def corpus_messages(corpus: Path) -> list[tuple[str, str]]:
    skip = {".json", ".fhir", ".csv", ".tsv", ".md"}
    out: list[tuple[str, str]] = []
    for path in sorted(corpus.rglob("*")):
        if path.is_file() and path.suffix.lower() not in skip and "LICENSE" not in path.name:
            out += [(str(path.relative_to(corpus)), m) for m in split_messages(path.read_bytes())]
    return out


def test_every_corpus_message_gets_a_well_formed_ack_with_its_control_id(corpus: Path) -> None:
    messages = corpus_messages(corpus)
    assert len(messages) >= 600
    for name, text in messages:
        try:
            msg = parse(text)
        except ParseError as exc:  # two corpus files have a broken MSH on purpose
            ar = render_ack(AckHeader.from_raw(text.encode()), "AR", (exc,), control_id="C0",
                            timestamp=TS)
            assert parse(ar).get("MSA-1") == "AR", name
            continue
        header = AckHeader.from_message(msg)
        for code in ("AA", "AE"):
            err = MappingError("OBX-5 not numeric", segment="OBX", field=5)
            ack = parse(render_ack(header, code, (err,) if code == "AE" else (),
                                   control_id="C1", timestamp=TS))
            assert ack.get("MSA-1") == code, name
            assert ack.msh.raw(10) == "C1" and ack.message_code == "ACK", name
            assert ack.msh.raw(12) == (msg.msh.raw(12).split("~")[0] or "2.5.1"), name
            assert ack.segment("MSA").raw(2) == msg.msh.raw(10).split(msg.enc.repetition)[0], name
            assert ack.msh.raw(5) == msg.msh.raw(3) and ack.msh.raw(3) == msg.msh.raw(5), name
        raw_header = AckHeader.from_raw(text.encode("utf-8"))
        assert raw_header.control_id == header.control_id, name
