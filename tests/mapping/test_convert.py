"""``gateway convert``: files in, a FHIR transaction Bundle out, offline."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from gateway.cli.main import main
from gateway.mapping.pseudonym import KEY_FILE_ENV

from .support import assert_valid, hl7

CF = "RSSMRA85T10A562S"


def oru(control: str, pid3: str, status: str = "F", value: str = "13.2") -> str:
    """San Raffaele ORU^R01: one haemoglobin result (OBX-11 ``status``)."""
    return hl7(
        f"MSH|^~\\&|LAB|HSR|GW|PLAGENCELL|20260101120000||ORU^R01^ORU_R01|{control}|P|2.5.1",
        f"PID|1||{pid3}||ROSSI^MARIO||19850110|M",
        "ORC|RE||ORD-1^HSR",
        "OBR|1||ORD-1^HSR|718-7^Hemoglobin^LN|||20260101100000",
        f"OBX|1|NM|718-7^Hemoglobin^LN||{value}|g/dL^g/dL^UCUM|12-16||||{status}")


@pytest.fixture(autouse=True)
def _no_key_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(KEY_FILE_ENV, raising=False)


def write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, dict, str]:
    code = main(["convert", *argv])
    out, err = capsys.readouterr()
    return code, json.loads(out) if out.strip() else {}, err


def resources(bundle: dict, kind: str) -> list[dict]:
    return [e["resource"] for e in bundle["entry"] if e["resource"]["resourceType"] == kind]


def test_a_file_becomes_a_transaction_bundle_of_put_entries(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, bundle, err = run(capsys, str(write(tmp_path, "a.hl7", oru("M1", "MRN1^^^HSR^MR"))))
    assert code == 0 and "demo key" in err
    assert bundle["resourceType"] == "Bundle" and bundle["type"] == "transaction"
    for entry in bundle["entry"]:
        r = entry["resource"]
        assert entry["request"] == {"method": "PUT", "url": f"{r['resourceType']}/{r['id']}"}
    assert [e["resource"]["resourceType"] for e in bundle["entry"]] == [
        "Organization", "Patient", "Specimen", "Observation", "Provenance"]
    assert_valid(e["resource"] for e in bundle["entry"])


def test_the_same_input_twice_gives_byte_identical_output(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = str(write(tmp_path, "a.hl7", oru("M1", "MRN1^^^HSR^MR")))
    main(["convert", path])
    first = capsys.readouterr().out
    main(["convert", path])
    assert capsys.readouterr().out == first


def test_files_behave_like_messages_received_in_order(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    first = write(tmp_path, "1.hl7", oru("M1", f"MRN1^^^HSR^MR~{CF}^^^MEF^NNITA"))
    # only the MRN, and a corrected result: the link applies, the new version follows
    second = write(tmp_path, "2.hl7", oru("M2", "MRN1^^^HSR^MR", status="C", value="12.9"))
    code, bundle, _ = run(capsys, str(first), str(second))
    assert code == 0
    assert len({p["id"] for p in resources(bundle, "Patient")}) == 1
    observations = resources(bundle, "Observation")
    assert [o["status"] for o in observations] == ["final", "corrected"]
    assert observations[0]["id"] == observations[1]["id"]
    assert len(resources(bundle, "Organization")) == 1  # identical versions are not repeated
    assert len(resources(bundle, "Provenance")) == 2


def test_bad_input_exits_non_zero_with_one_line_naming_segment_and_field(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    good = oru("M1", "MRN1^^^HSR^MR")
    bad = oru("M2", "")  # no PID-3
    code, bundle, err = run(capsys, str(write(tmp_path, "mixed.hl7", good + bad)))
    assert code == 1
    lines = [ln for ln in err.splitlines() if "mixed.hl7" in ln]
    assert len(lines) == 1 and "message 2" in lines[0] and "PID-3" in lines[0]
    assert "ROSSI" not in err
    assert len(resources(bundle, "Observation")) == 1  # the good message is not lost


def test_an_unknown_facility_needs_site(tmp_path: Path,
                                        capsys: pytest.CaptureFixture[str]) -> None:
    path = str(write(tmp_path, "x.hl7", oru("M1", "MRN1^^^X^MR").replace("|HSR|", "|NOPE|")))
    code, _, err = run(capsys, path)
    assert code == 1 and "MSH-4" in err
    code, bundle, _ = run(capsys, path, "--site", "hsr")
    assert code == 0 and resources(bundle, "Observation")


def test_report_writes_an_operation_outcome_with_positions(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    text = oru("M1", "MRN1^^^HSR^MR").replace("|M\r", "|M\rNK1|1|ROSSI^ANNA|SPO\r")
    out = tmp_path / "report.json"
    code, _, _ = run(capsys, str(write(tmp_path, "r.hl7", text)), "--report", str(out))
    report = json.loads(out.read_text())
    assert code == 0 and report["resourceType"] == "OperationOutcome"
    assert any(i["location"] == ["r.hl7[1] NK1[1]"] for i in report["issue"])
    assert "ROSSI" not in out.read_text()


def test_the_key_file_decides_the_pseudonyms(tmp_path: Path,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    path = str(write(tmp_path, "a.hl7", oru("M1", "MRN1^^^HSR^MR")))
    (tmp_path / "k1").write_bytes(b"1" * 32)
    (tmp_path / "k2").write_bytes(b"2" * 32)
    ids = set()
    for key in ("k1", "k2"):
        code, bundle, err = run(capsys, path, "--key-file", str(tmp_path / key))
        assert code == 0 and "demo key" not in err
        ids.add(resources(bundle, "Patient")[0]["id"])
    assert len(ids) == 2


def test_the_gateway_command_runs_convert_as_a_process(tmp_path: Path) -> None:
    path = write(tmp_path, "a.hl7", oru("M1", "MRN1^^^HSR^MR"))
    proc = subprocess.run([sys.executable, "-m", "gateway.cli.main", "convert", str(path)],
                          capture_output=True, timeout=60, check=False)
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["type"] == "transaction"
