"""The integrator's commands: gateway import, gateway sites new/check/test/schema."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from gateway.adapters.loader import EXAMPLE_SITES, load_network
from gateway.cli.main import main
from gateway.store.sql import SqlStore
from tests.adapters.conftest import csv_of
from tests.adapters.test_labexport import GOOD, ROWS


@pytest.fixture
def sites_dir(tmp_path: Path) -> Path:
    target = tmp_path / "sites"
    shutil.copytree(EXAMPLE_SITES, target)
    return target


def test_import_prints_the_report_and_exits_1_when_rows_were_rejected(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "qc.csv"
    path.write_bytes(csv_of(*ROWS))
    db = f"sqlite:///{tmp_path / 'g.db'}"
    args = ["import", str(path), "--site", "cf-lanzani", "--database-url", db,
            "--data-dir", str(tmp_path / "var"), "--init"]
    assert main(args) == 1
    report = json.loads(capsys.readouterr().out)
    assert report["accepted"] == 3 and report["rejected"][0]["column"] == "collected_at"
    assert (tmp_path / "var" / "pseudonym.key").exists()
    path.write_bytes(csv_of(GOOD))
    assert main(args) == 0
    store = SqlStore(db)
    try:
        assert len(store.inbox_list(site="cf-lanzani")) == 2
    finally:
        store.close()


def test_import_of_an_unknown_site_exits_2(tmp_path: Path) -> None:
    path = tmp_path / "x.csv"
    path.write_bytes(csv_of(GOOD))
    assert main(["import", str(path), "--site", "nowhere", "--data-dir", str(tmp_path)]) == 2


def test_sites_check_accepts_the_examples_and_names_the_line_of_an_error(
        sites_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["sites", "check", str(sites_dir)]) == 0
    assert "9 sites, 4 studies: valid" in capsys.readouterr().out
    broken = sites_dir / "hsr.yaml"
    broken.write_text(broken.read_text().replace("kind: hospital", "kind: hospitall"))
    assert main(["sites", "check", str(sites_dir)]) == 1
    assert f"{broken}:5: kind: Input should be 'hospital' or 'cell-factory'" in (
        capsys.readouterr().err)


def test_sites_new_scaffolds_a_site_that_checks_and_tests(
        sites_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["sites", "new", "osp-lodi", "--dir", str(sites_dir),
                 "--name", "Ospedale di Lodi", "--facility", "LODI"]) == 0
    assert (sites_dir / "osp-lodi.yaml").exists()
    assert (sites_dir / "samples" / "osp-lodi" / "expected" / "example-oru.hl7.json").exists()
    assert main(["sites", "check", str(sites_dir)]) == 0
    assert main(["sites", "test", "osp-lodi", "--dir", str(sites_dir)]) == 0
    assert "1 of 1 samples match" in capsys.readouterr().out


def test_sites_test_prints_differences_by_path(
        sites_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    site = sites_dir / "hpg23.yaml"
    site.write_text(site.read_text().replace('display: "C reactive protein [Mass/volume] in '
                                             'Serum or Plasma"', 'display: "CRP"'))
    assert main(["sites", "test", "hpg23", "--dir", str(sites_dir)]) == 1
    out = capsys.readouterr().out
    assert "FAIL release-or-monitoring.hl7" in out
    assert ('.resource.code.coding[0].display: expected "C reactive protein [Mass/volume] in '
            'Serum or Plasma", got "CRP"') in out


def test_sites_schema_prints_the_json_schema(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["sites", "schema"]) == 0
    assert json.loads(capsys.readouterr().out)["title"] == "Site"


HPG23_SAMPLE = "release-or-monitoring.hl7"


def test_sites_test_reports_a_sample_that_fails_to_map_as_a_fail_line_with_its_position(
        sites_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    samples = sites_dir / "samples" / "hpg23"
    text = (samples / HPG23_SAMPLE).read_text()
    (samples / "comma.hl7").write_text(text.replace("||48.2|", "||48,2|"))  # decimal comma
    shutil.copy(samples / "expected" / f"{HPG23_SAMPLE}.json",
                samples / "expected" / "comma.hl7.json")
    assert main(["sites", "test", "hpg23", "--dir", str(sites_dir)]) == 1
    out = capsys.readouterr().out
    assert "FAIL comma.hl7: OBX[1]-5: not a valid NM" in out
    assert "Traceback" not in out and "1 of 2 samples match" in out


def test_sites_test_reports_a_sample_without_expected_bundle_as_new_and_fails(
        sites_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    samples = sites_dir / "samples" / "hpg23"
    shutil.copy(samples / HPG23_SAMPLE, samples / "fresh.hl7")
    assert main(["sites", "test", "hpg23", "--dir", str(sites_dir)]) == 1
    assert "new  fresh.hl7: no expected bundle yet" in capsys.readouterr().out
    assert not (samples / "expected" / "fresh.hl7.json").exists()
    assert main(["sites", "test", "hpg23", "--dir", str(sites_dir), "--update"]) == 0
    assert main(["sites", "test", "hpg23", "--dir", str(sites_dir)]) == 0


def test_code_map_keys_that_yaml_reads_as_numbers_are_read_as_written(
        sites_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    site = sites_dir / "hpg23.yaml"
    site.write_text(site.read_text().replace("code_map:\n", (
        'code_map:\n  0000412: {system: "http://loinc.org", code: "2276-4"}\n'
        '  12: {system: "http://loinc.org", code: "718-7"}\n'
        '  NO: {system: "http://loinc.org", code: "777-3"}\n'), 1))
    network = load_network(sites_dir)
    assert {"0000412", "12", "NO"} <= set(network.sites["hpg23"].code_map)


def test_a_code_yaml_reads_as_a_number_gets_an_error_saying_to_quote_it(
        sites_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    site = sites_dir / "hpg23.yaml"
    site.write_text(site.read_text().replace(
        'code_map:\n', 'code_map:\n  "GLU": {system: "http://loinc.org", code: 0000412}\n', 1))
    assert main(["sites", "check", str(sites_dir)]) == 1
    assert ('code_map.GLU.code: Input should be a valid string (YAML read 0000412 as a '
            'number: quote it, "0000412")') in capsys.readouterr().err


def test_sites_check_says_when_the_directory_has_no_studies_file(
        sites_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (sites_dir / "studies.yaml").unlink()
    assert main(["sites", "check", str(sites_dir)]) == 0
    out = capsys.readouterr().out
    assert "warn studies.yaml: missing in" in out and "0 studies" in out
