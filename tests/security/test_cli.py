"""``gateway clients new|check`` and ``gateway token`` as an integrator uses them: register a
client, start the gateway with the file, get a token for curl, read with it."""

from __future__ import annotations

import asyncio
import stat
import sys
from pathlib import Path

import httpx
import pytest

from gateway.cli.main import main
from tests.security.support import bearer, start


def test_clients_new_writes_a_private_key_0600_and_a_valid_clients_file(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    clients, key = tmp_path / "clients.yaml", tmp_path / "keys" / "dash.pem"
    assert main(["clients", "new", "dash", "--scopes", "system/Observation.rs",
                 "--studies", "carcik-cd19", "--sites", "hpg23", "--clients", str(clients),
                 "--key-out", str(key), "--alg", "RS384"]) == 0
    assert stat.S_IMODE(key.stat().st_mode) == 0o600
    assert "kid" in capsys.readouterr().out
    assert main(["clients", "check", str(clients)]) == 0
    assert "1 clients OK" in capsys.readouterr().out
    # a second client with a bad study leaves the file as it was, and writes no key
    assert main(["clients", "new", "other", "--scopes", "system/Patient.r", "--studies",
                 "nope", "--clients", str(clients), "--key-out", str(tmp_path / "o.pem")]) == 2
    assert "nope" in capsys.readouterr().err
    assert not (tmp_path / "o.pem").exists()
    assert main(["clients", "check", str(clients)]) == 0
    assert main(["clients", "new", "dash", "--scopes", "system/Patient.r", "--clients",
                 str(clients), "--key-out", str(tmp_path / "d2.pem")]) == 2
    assert "already exists" in capsys.readouterr().err


def test_clients_check_names_file_line_and_field(tmp_path: Path,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "clients.yaml"
    path.write_text("clients:\n  - id: x\n    name: X\n    jwks: {keys: []}\n"
                    "    scopes: [system/Observation.rs]\n")
    assert main(["clients", "check", str(path)]) == 1
    assert f"{path}:4: clients.0.jwks: no key" in capsys.readouterr().err


async def test_gateway_token_prints_an_access_token_that_curl_can_use(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    clients, key = tmp_path / "clients.yaml", tmp_path / "dash.pem"
    assert main(["clients", "new", "dash", "--scopes", "system/Observation.rs",
                 "--clients", str(clients), "--key-out", str(key)]) == 0
    capsys.readouterr()
    gw = await start(tmp_path, clients)
    try:
        url = f"http://127.0.0.1:{gw.http_port}"
        argv = ["token", "--clients", str(clients), "--client", "dash", "--key", str(key),
                "--url", url]
        assert await asyncio.to_thread(main, argv) == 0
        token = capsys.readouterr().out.strip()
        process = await asyncio.create_subprocess_exec(  # as a shell runs it
            sys.executable, "-m", "gateway", *argv, stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE)
        out, err = await process.communicate()
        assert process.returncode == 0 and out.decode().count(".") == 2  # one JWT
        assert err.decode() == ""  # no log line of each HTTP request around it
        assert await asyncio.to_thread(main, [*argv, "--scope", "system/Patient.r"]) == 1
        assert "invalid_scope" in capsys.readouterr().err
        assert await asyncio.to_thread(main, [*argv, "--assertion"]) == 0
        signed = capsys.readouterr().out.strip()
        async with httpx.AsyncClient(base_url=url) as http:
            read = await http.get("/fhir/Observation", headers=bearer(token))
            # the printed assertion is what a curl to /auth/token posts
            posted = await http.post("/auth/token", data={
                "grant_type": "client_credentials", "client_assertion": signed,
                "client_assertion_type":
                    "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
                "scope": "system/Observation.rs"})
    finally:
        await gw.stop()
    assert read.status_code == 200
    assert posted.status_code == 200 and posted.json()["scope"] == "system/Observation.rs"


def test_gateway_serve_refuses_to_start_on_a_broken_clients_file_and_beyond_loopback(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    broken = tmp_path / "clients.yaml"
    broken.write_text("clients:\n  - id: x\n    name: X\n    scopes: [system/Observation.sr]\n")
    common = ["--http-port", "0", "--mllp-port", "0", "--data-dir", str(tmp_path / "var")]
    assert main(["serve", "--clients", str(broken), *common]) == 2
    assert f"{broken}:4: clients.0.scopes" in caplog.text
    assert main(["serve", "--host", "0.0.0.0", *common]) == 2  # noqa: S104
    assert "--insecure-no-auth" in caplog.text
