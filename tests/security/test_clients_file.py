"""The clients file: validated like site files (file, line and field named on error),
studies resolved to ResearchStudy ids, sites checked against the loaded sites."""

from __future__ import annotations

from pathlib import Path

import pytest

from gateway.adapters.loader import load_network
from gateway.errors import ConfigError
from gateway.mapping.research import study_id
from gateway.security import keys
from gateway.security.clients import load_clients, scope_error

NETWORK = load_network()
JWK = keys.public_jwk(keys.generate("ES384"))


def _file(tmp_path: Path, body: str) -> Path:
    path = tmp_path / "clients.yaml"
    path.write_text(body)
    return path


def _jwks() -> str:
    return "{keys: [{" + ", ".join(f"{k}: '{v}'" for k, v in JWK.items()) + "}]}"


def test_a_valid_file_resolves_studies_by_id_identifier_and_explicit_id(tmp_path: Path) -> None:
    path = _file(tmp_path, f"""
clients:
  - id: dash
    name: Dashboard
    jwks: {_jwks()}
    scopes: system/Observation.rs system/gateway.ingest
    studies: [carcik-cd19, "https://clinicaltrials.gov/nctid|NCT99999999", ResearchStudy/abc]
    sites: [hpg23]
""")
    [client] = load_clients(path, NETWORK).values()
    carcik = study_id({"system": "https://euclinicaltrials.eu/clinicalTrialId",
                       "value": "2023-503816-41-00"})
    other = study_id({"system": "https://clinicaltrials.gov/nctid", "value": "NCT99999999"})
    assert client.studies == {carcik, other, "abc"}
    assert client.sites == {"hpg23"}
    assert client.scopes == {"system/Observation.rs", "system/gateway.ingest"}
    assert client.key(JWK["kid"]) is not None and client.key("other") is None


@pytest.mark.parametrize(("body", "where"), [
    ("    scopes: [system/Observation.sr]\n", ":5: clients.0.scopes"),
    ("    scopes: [system/gateway.everything]\n", ":5: clients.0.scopes"),
    ("    scopes: [system/Observation.rs]\n    studies: [no-such-study]\n",
     ":6: clients.0.studies.0"),
    ("    scopes: [system/Observation.rs]\n    sites: [nowhere]\n", ":6: clients.0.sites.0"),
    ("    scopes: [system/Observation.rs]\n    colour: blue\n", ":6: clients.0.colour"),
])
def test_a_broken_client_is_refused_naming_file_line_and_field(
        tmp_path: Path, body: str, where: str) -> None:
    path = _file(tmp_path, f"clients:\n  - id: dash\n    name: D\n    jwks: {_jwks()}\n{body}")
    with pytest.raises(ConfigError) as caught:
        load_clients(path, NETWORK)
    assert f"{path}{where}" in str(caught.value)


def test_a_private_key_in_the_file_and_a_missing_key_are_refused(tmp_path: Path) -> None:
    private = _jwks().replace("}]}", ", d: 'secret'}]}")
    for jwks, words in ((private, "never a private one"), ("{keys: []}", "no key")):
        path = _file(tmp_path, f"clients:\n  - id: c\n    name: C\n    jwks: {jwks}\n"
                     "    scopes: [system/Patient.r]\n")
        with pytest.raises(ConfigError, match=words):
            load_clients(path, NETWORK)


def test_a_jwks_file_is_read_relative_to_the_clients_file(tmp_path: Path) -> None:
    import json

    (tmp_path / "keys").mkdir()
    (tmp_path / "keys" / "c.json").write_text(json.dumps({"keys": [JWK]}))
    path = _file(tmp_path, "clients:\n  - id: c\n    name: C\n    jwks_file: keys/c.json\n"
                 "    scopes: [system/Patient.r]\n")
    assert load_clients(path, NETWORK)["c"].key(JWK["kid"]) is not None


def test_duplicate_ids_and_duplicate_keys_are_refused(tmp_path: Path) -> None:
    entry = f"  - id: c\n    name: C\n    jwks: {_jwks()}\n    scopes: [system/Patient.r]\n"
    with pytest.raises(ConfigError, match=r":6: clients.1.id: client c is defined twice"):
        load_clients(_file(tmp_path, "clients:\n" + entry + entry), NETWORK)
    with pytest.raises(ConfigError, match="duplicate key"):
        load_clients(_file(tmp_path, "clients:\n" + entry + "    name: again\n"), NETWORK)


@pytest.mark.parametrize(("scope", "ok"), [
    ("system/Observation.rs", True), ("system/*.cruds", True), ("system/Patient.read", True),
    ("system/gateway.admin", True), ("system/Observation.sr", False),
    ("system/Observation.", False), ("Observation.rs", False), ("system/gateway.x", False),
])
def test_scopes_are_smart_v2_or_the_gateways_own(scope: str, ok: bool) -> None:
    assert (scope_error(scope) is None) is ok


def test_a_client_without_keys_is_an_oidc_only_client(tmp_path: Path) -> None:
    path = _file(tmp_path, "clients:\n  - id: idp-app\n    name: App\n"
                 "    scopes: [system/Observation.rs]\n")
    assert load_clients(path, NETWORK)["idp-app"].keys == {}
