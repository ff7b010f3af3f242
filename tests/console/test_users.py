"""Console users: scrypt password hashes, the clients file's ``users:`` (checked like the
clients, errors with file, line and field), and ``gateway users add``."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from gateway.adapters.loader import EXAMPLE_SITES, load_network
from gateway.errors import ConfigError
from gateway.security.clients import load_access
from gateway.security.users import check_login, hash_password, verify_password


def test_a_password_hash_verifies_only_its_password_and_is_salted() -> None:
    first, second = hash_password("correct horse battery"), hash_password("correct horse battery")
    assert first.startswith("scrypt$32768$8$1$") and first != second
    assert verify_password("correct horse battery", first)
    assert not verify_password("correct horse batterY", first)
    assert not verify_password("correct horse battery", "scrypt$garbage")


def test_users_are_read_with_their_scopes_and_resolved_studies(tmp_path: Path) -> None:
    path = tmp_path / "clients.yaml"
    path.write_text(yaml.safe_dump({"clients": [], "users": [
        {"id": "rita", "name": "Rita", "password": hash_password("x" * 12),
         "scopes": "system/ResearchStudy.rs", "studies": ["carcik-cd19"], "sites": ["hpg23"]}]}))
    _, users = load_access(path, load_network(EXAMPLE_SITES))
    rita = users["rita"]
    principal = rita.principal()
    assert principal.client_id == "user:rita" and principal.restricted
    assert principal.sites == frozenset({"hpg23"}) and len(principal.studies or ()) == 1
    assert check_login(users, "rita", "x" * 12) is rita
    assert check_login(users, "rita", "y" * 12) is None
    assert check_login(users, "nobody", "x" * 12) is None


@pytest.mark.parametrize(("user", "field"), [
    ({"password": "in clear"}, "users.0.password"),
    ({"scopes": "system/gateway.nothing"}, "users.0.scopes"),
    ({"sites": ["atlantis"]}, "users.0.sites.0"),
])
def test_a_bad_user_entry_names_the_file_line_and_field(tmp_path: Path, user: dict[str, object],
                                                        field: str) -> None:
    path = tmp_path / "clients.yaml"
    entry = {"id": "u", "name": "U", "scopes": "system/gateway.admin", **user}
    path.write_text(yaml.safe_dump({"clients": [], "users": [entry]}))
    with pytest.raises(ConfigError) as caught:
        load_access(path, load_network(EXAMPLE_SITES))
    assert caught.value.context["field"] == field and str(path) in str(caught.value)


def _gateway(*args: str, stdin: str = "") -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "gateway", *args], input=stdin,
                          capture_output=True, text=True, timeout=60)


def test_users_add_writes_a_hash_never_the_password(tmp_path: Path) -> None:
    path = tmp_path / "clients.yaml"
    done = _gateway("users", "add", "anna", "--clients", str(path), "--scopes",
                    "system/gateway.admin system/gateway.raw", "--sites", "hpg23",
                    "--password-stdin", stdin="a long passphrase\n")
    assert done.returncode == 0, done.stderr
    text = path.read_text()
    assert "a long passphrase" not in text
    _, users = load_access(path, load_network(EXAMPLE_SITES))
    assert check_login(users, "anna", "a long passphrase") is users["anna"]
    short = _gateway("users", "add", "bob", "--clients", str(path), "--scopes",
                     "system/gateway.admin", "--password-stdin", stdin="short\n")
    unknown = _gateway("users", "add", "bob", "--clients", str(path), "--scopes",
                       "system/gateway.admin", "--sites", "atlantis", "--password-stdin",
                       stdin="a long passphrase\n")
    assert short.returncode == 2 and "at least 10 characters" in short.stderr
    assert unknown.returncode == 2 and "atlantis" in unknown.stderr
    assert path.read_text() == text  # refused: the file as it was
