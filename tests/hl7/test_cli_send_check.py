"""``gateway send`` against a real MLLP server; ``gateway check`` on good and bad messages."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from gateway.cli.main import main
from gateway.errors import Location, MappingError
from gateway.hl7.ack import AckHeader, build_acks, encode_ack
from gateway.hl7.check import Finding, check_message, inbound_errors
from gateway.hl7.mllp import MllpServer, Peer
from gateway.hl7.parser import parse

SAMPLES = Path(__file__).resolve().parent.parent / "samples"
GOOD = (SAMPLES / "oru_r01_10obx.hl7").read_text()


class AckingHandler:
    """Answers with real ACKs from gateway.hl7.ack: AE when MSH-10 contains BAD."""

    async def handle(self, frame: bytes, peer: Peer) -> list[bytes]:
        msg = parse(frame)
        errors = []
        if "BAD" in msg.control_id:
            errors.append(MappingError("OBX-5 is not a valid NM", segment="OBX", sequence=2,
                                       field=5))
        return [encode_ack(a, msg.charset) for a in build_acks(AckHeader.from_message(msg),
                                                                errors)]

    def oversize(self, head: bytes, peer: Peer) -> list[bytes]:
        return []


def two_messages(tmp_path: Path, second_id: str) -> Path:
    path = tmp_path / "batch.hl7"
    second = GOOD.replace("HPG23-LAB-000123", second_id)
    path.write_bytes(b"\xef\xbb\xbf" + GOOD.replace("\n", "\r\n").encode() + second.encode())
    return path


async def run_cli(*argv: str) -> int:
    return await asyncio.to_thread(main, list(argv))


async def test_send_prints_one_line_per_ack_and_exits_0_when_all_are_aa(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    async with MllpServer(AckingHandler(), "127.0.0.1", 0) as srv:
        code = await run_cli("send", str(two_messages(tmp_path, "SECOND-1")),
                             "--port", str(srv.port))
    lines = capsys.readouterr().out.splitlines()
    assert code == 0
    assert lines == ["batch.hl7#1 HPG23-LAB-000123 → AA", "batch.hl7#2 SECOND-1 → AA"]


async def test_send_reaches_the_mllp_port_named_by_gateway_mllp_port(
        tmp_path: Path, capsys: pytest.CaptureFixture[str],
        monkeypatch: pytest.MonkeyPatch) -> None:
    async with MllpServer(AckingHandler(), "127.0.0.1", 0) as srv:
        monkeypatch.setenv("GATEWAY_MLLP_PORT", str(srv.port))
        code = await run_cli("send", str(two_messages(tmp_path, "ENV-2")))
    assert code == 0
    assert capsys.readouterr().out.splitlines()[1] == "batch.hl7#2 ENV-2 → AA"


async def test_send_shows_err_and_exits_1_when_an_answer_is_ae(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    async with MllpServer(AckingHandler(), "127.0.0.1", 0) as srv:
        code = await run_cli("send", str(two_messages(tmp_path, "BAD-2")),
                             "--port", str(srv.port))
    lines = capsys.readouterr().out.splitlines()
    assert code == 1
    assert lines[1] == ("batch.hl7#2 BAD-2 → AE 102 OBX^2^5^1 "
                        "OBX-5 is not a valid NM")


async def test_send_exits_2_when_nothing_listens(tmp_path: Path,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    srv = MllpServer(AckingHandler(), "127.0.0.1", 0)
    await srv.start()
    port = srv.port
    await srv.close()
    code = await run_cli("send", str(two_messages(tmp_path, "X")), "--port", str(port))
    assert code == 2 and "ConnectionRefusedError" in capsys.readouterr().err


def test_the_shared_sample_has_no_error_findings() -> None:
    assert [f for f in check_message(GOOD) if f.severity == "E"] == []


def test_check_finds_missing_required_fields_and_bad_datatypes_with_positions() -> None:
    bad = ("MSH|^~\\&|LIS|HPG23|GW|NET|20261127101000||ORU^R01^ORU_R01|M1|P|2.5.1\r"
           "PID|1||||ROSSI^MARIO||1970-01-01\r"           # PID-3 missing, PID-7 not a DTM
           "OBR|1||X1|CART-MON^Panel^L\r"
           "OBX|1|NM|1988-5^CRP^LN||48.2|mg/L|||||F\r"
           "OBX|2|NM|2276-4^Ferritin^LN||high|ng/mL|||||F\r")  # OBX[2]-5 not NM
    findings = {(f.severity, f.err_code, f.location) for f in check_message(bad)}
    assert ("E", "101", Location("PID", 1, 3)) in findings
    assert ("E", "102", Location("PID", 1, 7, 1, 1)) in findings
    assert ("E", "102", Location("OBX", 2, 5, None, 1)) in findings
    assert not any(f.location.segment == "OBX" and f.location.sequence == 1
                   for f in check_message(bad) if f.severity == "E")


def test_check_texts_never_carry_values_from_the_message() -> None:
    bad = ("MSH|^~\\&|LIS|HPG23|GW|NET|2026||ORU^R01^ORU_R01|M1|P|2.5.1\r"
           "PID|1||X||SEGRETO^NOME||ZZZZ|QQ\rOBX|1|NM|1^A^LN||SEGRETO|||||F\r")
    texts = " ".join(f.text for f in check_message(bad))
    assert "SEGRETO" not in texts and "ZZZZ" not in texts and "QQ" not in texts


def test_a_comparator_in_an_nm_result_is_a_warning_not_an_error() -> None:
    msg = GOOD.replace("|112.5|", "|<0.5|")
    found = [f for f in check_message(msg) if f.location.field == 5]
    assert [(f.severity, f.location.sequence) for f in found] == [("W", 3)]


def test_a_missing_required_segment_is_a_segment_sequence_error() -> None:
    msg = "\n".join(ln for ln in GOOD.splitlines() if not ln.startswith("OBR"))
    assert any(f.err_code == "100" and f.location.segment == "OBR" and f.severity == "E"
               for f in check_message(msg))


def test_an_unknown_version_is_checked_as_2_5_1_and_said_so() -> None:
    findings = check_message(GOOD.replace("|2.5.1|", "|2.9.9|", 1))
    assert findings[0] == Finding("W", Location("MSH", 1, 12), "version 2.9.9 is not known to "
                                  "the validator: checked as 2.5.1", "203")


def test_an_unknown_message_type_is_reported_as_unsupported() -> None:
    findings = check_message(GOOD.replace("ORU^R01^ORU_R01", "XYZ^Q99", 1))
    assert [f.err_code for f in findings if f.severity == "E"] == ["200"]


def test_a_local_z_message_type_is_a_warning_that_its_structure_is_not_checked() -> None:
    findings = check_message(GOOD.replace("ORU^R01^ORU_R01", "ZRS^Z01", 1))
    assert [(f.severity, f.err_code) for f in findings if f.location.field == 9] == [("W", "200")]


def test_five_encoding_characters_are_accepted_by_the_checker() -> None:
    findings = check_message(GOOD.replace("^~\\&", "^~\\&#", 1))
    assert [f for f in findings if f.severity == "E"] == []


def test_check_command_exits_0_on_a_good_file_and_1_on_a_bad_one(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    good = tmp_path / "good.hl7"
    good.write_text(GOOD)
    bad = tmp_path / "bad.hl7"
    bad.write_text(GOOD.replace("|48.2|", "|abc|"))
    assert main(["check", str(good)]) == 0
    assert main(["check", str(bad)]) == 1
    out = capsys.readouterr().out
    assert "bad.hl7#1 E 102 OBX-5: OBX-5 is not a valid NM (OBX-2 is NM)" in out
    assert "good.hl7#1: 0 error(s)" in out


def test_inbound_errors_turn_error_findings_into_ae_and_ar_errors_for_strict_sites() -> None:
    bad = GOOD.replace("|48.2|", "|abc|")
    errors = inbound_errors(bad)
    assert [(e.ack_code, e.err_code, e.location) for e in errors] == [
        ("AE", "102", Location("OBX", 1, 5, None, 1))]
    assert inbound_errors(GOOD) == []
    unsupported = inbound_errors(GOOD.replace("ORU^R01^ORU_R01", "XYZ^Q99", 1))
    assert [e.ack_code for e in unsupported] == ["AR"]
