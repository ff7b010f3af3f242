"""Site files: a new site from YAML alone, and broken files refused with file, line, field."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from gateway.adapters.loader import EXAMPLE_SITES, load_network, reload_network
from gateway.cli.sites import SCHEMA_FILE, schema_text
from gateway.errors import ConfigError

MINIMAL = "id: osp-nuovo\nname: Ospedale Nuovo\nkind: hospital\nfacilities: [OSPNUOVO]\n"


def write(directory: Path, name: str, text: str) -> Path:
    path = directory / name
    path.write_text(text, encoding="utf-8")
    return path


def test_a_new_site_is_added_with_only_a_yaml_file(tmp_path: Path) -> None:
    shutil.copy(EXAMPLE_SITES / "studies.yaml", tmp_path)
    write(tmp_path, "osp-nuovo.yaml", MINIMAL + 'code_map:\n  "PCR": {system: "http://loinc.org", '
          'code: "1988-5", unit: "mg/L"}\nstudy_aliases: {"CARCIK-ON": carcik-cd19}\n')
    network = load_network(tmp_path)
    site = network.site_for("ospnuovo")
    assert site is not None and site.id == "osp-nuovo"
    assert site.code_map["PCR"].code == "1988-5" and site.timezone == "Europe/Rome"
    assert network.study_for(site.study_aliases["CARCIK-ON"]).id == "carcik-cd19"


def test_the_nine_example_sites_load_with_code_maps() -> None:
    network = load_network()
    assert len(network.sites) == 9 and len(network.studies) == 4
    assert all(site.code_map for site in network.sites.values())
    assert network.sites["hpg23"].code_map["PCR"].code == "1988-5"


@pytest.mark.parametrize(("text", "line", "field"), [
    (MINIMAL + "colour: blue\n", 5, "colour"),
    (MINIMAL + "code_map:\n  CRP: {system: x}\n", 6, "code_map.CRP.code"),
    (MINIMAL.replace("kind: hospital", "kind: clinic"), 3, "kind"),
    (MINIMAL + "code_map:\n  GLU: {system: x, code: 0000412}\n", 6, "code_map.GLU.code"),
    (MINIMAL + "overrides:\n  - {source: OBX-3.1, target: Observation.code, "
     "when: 'OBX-3.3 = L and OBX-2 = NM and PID-8 = F'}\n", 6, "overrides.0.when"),
    (MINIMAL + "overrides:\n  - {source: OBX-3.1, target: Observation.code, "
     "function: no-such-function}\n", 6, "overrides.0.function"),
    (MINIMAL + "lab_exports:\n  - name: lims\n    columns: {patient: X}\n", 7,
     "lab_exports.0.columns.patient"),
    (MINIMAL + "privacy:\n  free_text: keep\n", 5, "privacy"),  # keep without a reason
    (MINIMAL + "privacy:\n  keep_nte: true\n", 5, "privacy"),  # the replaced switch
    (MINIMAL + "unmapped_codes: refuse\n", 5, "unmapped_codes"),
])
def test_a_broken_site_file_is_refused_naming_file_line_and_field(
        tmp_path: Path, text: str, line: int, field: str) -> None:
    path = write(tmp_path, "osp-nuovo.yaml", text)
    with pytest.raises(ConfigError) as caught:
        load_network(tmp_path)
    err = caught.value
    assert err.context["file"] == str(path)
    assert err.context["line"] == line
    assert err.context["field"] == field.replace(".[key]", "")
    assert f"{path}:{line}:" in str(err)


def test_a_yaml_syntax_error_names_the_line(tmp_path: Path) -> None:
    write(tmp_path, "bad.yaml", MINIMAL + "code_map: {CRP: [\n")
    with pytest.raises(ConfigError, match=r"bad.yaml:6") as caught:
        load_network(tmp_path)
    assert caught.value.context["line"] == 6


def test_a_duplicate_key_is_refused(tmp_path: Path) -> None:
    write(tmp_path, "dup.yaml", MINIMAL + "city: Lodi\ncity: Crema\n")
    with pytest.raises(ConfigError, match=r"dup.yaml:6: city: duplicate key"):
        load_network(tmp_path)


def test_a_facility_claimed_by_two_sites_is_refused(tmp_path: Path) -> None:
    write(tmp_path, "a.yaml", MINIMAL)
    write(tmp_path, "b.yaml", MINIMAL.replace("osp-nuovo", "osp-altro"))
    with pytest.raises(ConfigError, match=r"b.yaml:4: facilities.0: facility OSPNUOVO "
                       r"already belongs to site osp-nuovo"):
        load_network(tmp_path)


def test_a_study_alias_must_name_a_network_study(tmp_path: Path) -> None:
    shutil.copy(EXAMPLE_SITES / "studies.yaml", tmp_path)
    write(tmp_path, "a.yaml", MINIMAL + "study_aliases:\n  X1: no-such-study\n")
    with pytest.raises(ConfigError, match=r"a.yaml:6: study_aliases.X1"):
        load_network(tmp_path)


def test_reload_keeps_the_old_configuration_when_the_new_one_is_wrong(tmp_path: Path) -> None:
    write(tmp_path, "a.yaml", MINIMAL)
    network = load_network(tmp_path)
    write(tmp_path, "b.yaml", MINIMAL.replace("osp-nuovo", "osp-b").replace("OSPNUOVO", "B"))
    assert reload_network(network) is None
    assert set(network.sites) == {"osp-nuovo", "osp-b"}
    write(tmp_path, "c.yaml", "id: c\n")
    error = reload_network(network)
    assert isinstance(error, ConfigError) and set(network.sites) == {"osp-nuovo", "osp-b"}


def test_the_committed_schema_is_the_generated_one() -> None:
    assert SCHEMA_FILE.read_text(encoding="utf-8") == schema_text()
    schema = json.loads(schema_text())
    assert set(schema["required"]) == {"id", "name", "kind", "facilities"}


def test_the_example_sites_validate_against_the_json_schema() -> None:
    import jsonschema
    import yaml

    schema = json.loads(SCHEMA_FILE.read_text(encoding="utf-8"))
    for path in sorted(EXAMPLE_SITES.glob("*.yaml")):
        if path.name in ("studies.yaml",) or path.name.startswith("codesystem-"):
            continue
        jsonschema.validate(yaml.safe_load(path.read_text(encoding="utf-8")), schema)
