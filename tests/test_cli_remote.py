"""The command-line tools against a running gateway (real HTTP and MLLP sockets): ``gateway
reload``, ``replay`` and ``import`` talk to it by default; offline they refuse to create a
database or a pseudonym key without ``--init``; ``/admin`` wants the admin scope."""

from __future__ import annotations

import asyncio
import shutil
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from gateway import runtime
from gateway.adapters.loader import EXAMPLE_SITES
from gateway.cli.main import main
from gateway.runtime import Gateway
from gateway.security.principal import ADMIN, Principal
from tests.adapters.conftest import csv_of, free_port
from tests.adapters.test_labexport import GOOD
from tests.support import hub_search
from tests.test_daily_loop import add_code, oru
from tests.test_runtime import msa, send, start_gateway

Scope = dict[str, Any]
ASGI = Callable[[Scope, Any, Any], Awaitable[None]]


class HeaderPrincipal:
    """Test-only: the scopes named in the ``X-Test-Scopes`` header become the request's
    Principal, inside the (loopback, token-less) authentication middleware, so that the
    endpoints' own scope checks are tested; tests/security runs the same endpoints with real
    tokens."""

    def __init__(self, app: ASGI) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Any, send: Any) -> None:
        if scope["type"] == "http":
            given = dict(scope["headers"]).get(b"x-test-scopes")
            if given is not None:
                scope.setdefault("state", {})["principal"] = Principal(
                    "test-client", frozenset(given.decode().split()))
        await self.app(scope, receive, send)


@pytest.fixture
def sites(tmp_path: Path) -> Path:
    target = tmp_path / "sites"
    shutil.copytree(EXAMPLE_SITES, target)
    return target


@pytest.fixture
async def gateway(tmp_path: Path, sites: Path, monkeypatch: pytest.MonkeyPatch,
                  database_url: str) -> AsyncIterator[Gateway]:
    plain_gzip = runtime._gzip

    def with_principal(app: FastAPI) -> None:
        plain_gzip(app)
        app.add_middleware(HeaderPrincipal)

    monkeypatch.setattr(runtime, "_gzip", with_principal)
    gw = await start_gateway(tmp_path, database_url, sites=sites)
    yield gw
    await gw.stop()


def url_of(gw: Gateway) -> str:
    return f"http://127.0.0.1:{gw.http_port}"


async def cli(*argv: str) -> int:
    """``gateway …`` in a thread: the gateway under test runs on this event loop."""
    return await asyncio.to_thread(main, list(argv))


async def test_gateway_reload_finds_the_gateway_by_its_pid_file_and_reloads(
        gateway: Gateway, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    pid_file = tmp_path / "var" / "gateway.pid"
    assert pid_file.read_text().split()[1] == url_of(gateway)
    monkeypatch.setenv("GATEWAY_DATA_DIR", str(tmp_path / "var"))
    monkeypatch.delenv("GATEWAY_URL", raising=False)
    assert await cli("reload") == 0
    assert "reloaded: 9 sites" in capsys.readouterr().out


async def test_gateway_reload_exits_1_and_names_the_file_when_a_site_file_is_invalid(
        gateway: Gateway, sites: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (sites / "hsr.yaml").write_text("id: hsr\nkind: hospitall\n", encoding="utf-8")
    assert await cli("reload", "--url", url_of(gateway)) == 1
    err = capsys.readouterr().err
    assert "hsr.yaml" in err and "running configuration stays in force" in err


async def test_gateway_reload_without_a_running_gateway_exits_2_and_says_what_to_do(
        capsys: pytest.CaptureFixture[str]) -> None:
    assert await cli("reload", "--url", f"http://127.0.0.1:{free_port()}") == 2
    assert "no gateway answers" in capsys.readouterr().err


async def test_gateway_replay_asks_the_running_gateway_and_maps_the_new_code(
        gateway: Gateway, sites: Path, capsys: pytest.CaptureFixture[str]) -> None:
    [ack] = await send(gateway, oru("CLI1"))
    assert msa(ack) == ["AA", "CLI1"]
    add_code(sites)
    assert await cli("reload", "--url", url_of(gateway)) == 0
    assert await cli("replay", "--status", "all", "--site", "hpg23",
                     "--url", url_of(gateway)) == 0
    assert "messages re-mapped: 1\n" in capsys.readouterr().out
    found = await hub_search(gateway, "Observation", [("code", "http://loinc.org|2276-4")])
    assert len(found) == 1


async def test_gateway_import_sends_the_file_to_the_running_gateway(
        gateway: Gateway, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "elsewhere" / "qc.csv"
    path.parent.mkdir()
    path.write_bytes(csv_of(GOOD))
    assert await cli("import", str(path), "--site", "cf-lanzani",
                     "--url", url_of(gateway)) == 0
    assert '"accepted": 1' in capsys.readouterr().out
    assert gateway.store is not None
    assert len(gateway.store.inbox_list(site="cf-lanzani")) == 1
    assert not (path.parent / "var").exists()  # nothing created where the command ran


async def test_admin_endpoints_refuse_a_caller_without_the_admin_scope(
        gateway: Gateway) -> None:
    async with httpx.AsyncClient(base_url=url_of(gateway)) as http:
        for method, path in (("POST", "/admin/reload"), ("POST", "/admin/replay"),
                             ("GET", "/admin/messages"), ("GET", "/admin/messages/1"),
                             ("POST", "/admin/messages/1/replay")):
            r = await http.request(method, path,
                                   headers={"X-Test-Scopes": "system/Observation.rs"})
            assert r.status_code == 403, path
            assert ADMIN in r.text
        r = await http.post("/admin/reload", headers={"X-Test-Scopes": ADMIN})
        assert r.status_code == 200


def test_gateway_import_offline_refuses_to_create_a_database_or_key_without_init(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "qc.csv"
    path.write_bytes(csv_of(GOOD))
    data = tmp_path / "var"
    assert main(["import", str(path), "--site", "cf-lanzani", "--data-dir", str(data)]) == 2
    assert "--init" in capsys.readouterr().err
    assert not data.exists() or not any(data.iterdir())
    assert main(["import", str(path), "--site", "cf-lanzani", "--data-dir", str(data),
                 "--init"]) == 0
    assert (data / "pseudonym.key").exists() and (data / "gateway.db").exists()


def test_gateway_replay_offline_refuses_a_data_dir_without_a_gateway_database(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    assert main(["replay", "--data-dir", str(tmp_path / "nothing")]) == 2
    assert "no gateway database" in caplog.text and "--init" in caplog.text
    assert not (tmp_path / "nothing").exists()


@pytest.mark.parametrize("command", ["import", "replay", "reload", "send", "convert", "check"])
def test_each_tool_s_help_lists_only_its_own_options(
        command: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main([command, "--help"])
    text = capsys.readouterr().out
    for serve_only in ("--mllp-tls-cert", "--max-message-size", "--kafka-bootstrap",
                       "--role", "--idle-timeout"):
        assert serve_only not in text, f"{command} --help lists {serve_only}"


async def test_admin_messages_lists_newest_first_in_pages_with_a_next_link_and_filters(
        gateway: Gateway) -> None:
    for n in range(5):
        await send(gateway, oru(f"PAGE{n}"))
    await send(gateway, oru("PAGEX", facility="NOWHERE"))
    seen: list[str] = []
    async with httpx.AsyncClient() as http:
        url: str | None = f"{url_of(gateway)}/admin/messages?limit=2"
        while url is not None:
            r = await http.get(url)
            assert r.status_code == 200
            body = r.json()
            assert len(body["messages"]) <= 2
            seen += [m["control_id"] for m in body["messages"]]
            url = body["next"]
        assert seen == ["PAGEX", "PAGE4", "PAGE3", "PAGE2", "PAGE1", "PAGE0"]

        base = f"{url_of(gateway)}/admin/messages"
        row = (await http.get(base, params={"control_id": "PAGE3"})).json()["messages"][0]
        assert row["resources"]["Observation"] == 2  # counted, not listed
        assert row["type"].startswith("ORU^R01")
        rejected = (await http.get(base, params={"status": "rejected"})).json()["messages"]
        assert [m["control_id"] for m in rejected] == ["PAGEX"]
        assert len((await http.get(base, params={"site": "hpg23", "type": "ORU"}))
                   .json()["messages"]) == 5
        assert (await http.get(base, params={"type": "ADT"})).json()["messages"] == []
        assert (await http.get(base, params={"until": "2000-01-01"})).json()["messages"] == []
        assert len((await http.get(base, params={"since": "2000-01-01"}))
                   .json()["messages"]) == 6
        detail = (await http.get(f"{base}/{row['id']}")).json()
        assert detail["control_id"] == "PAGE3" and detail["report"]["resourceType"] == \
            "OperationOutcome"
        assert any(ref.startswith("Observation/") for ref in detail["resources"])
        bad = await http.get(base, params={"cursor": "not-a-cursor"})
        assert bad.status_code == 400 and "next" in bad.text
        bad = await http.get(base, params={"since": "yesterday"})
        assert bad.status_code == 400 and "ISO 8601" in bad.text


async def test_a_lab_export_row_with_a_new_code_then_the_code_mapped_gives_one_observation(
        gateway: Gateway, sites: Path, tmp_path: Path,
        capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "qc.csv"
    path.write_bytes(csv_of("PZ001,FT01,LOT-9,,,2026-11-20T09:30:00,NEWQC,,New QC,7,%,,,final,,"))
    assert await cli("import", str(path), "--site", "cf-lanzani", "--url", url_of(gateway)) == 0
    local = await hub_search(gateway, "Observation", [
        ("code", "urn:plagencell:site:cf-lanzani:codes|NEWQC")])
    assert len(local) == 1
    site = sites / "cf-lanzani.yaml"
    site.write_text(site.read_text(encoding="utf-8").replace("code_map:\n", (
        'code_map:\n  "NEWQC": {system: "http://loinc.org", code: "2276-4", unit: "%"}\n'), 1),
        encoding="utf-8")
    assert await cli("reload", "--url", url_of(gateway)) == 0
    assert await cli("replay", "--status", "all", "--site", "cf-lanzani",
                     "--url", url_of(gateway)) == 0
    [mapped] = await hub_search(gateway, "Observation", [("code", "http://loinc.org|2276-4")])
    assert mapped["id"] == local[0]["id"] and mapped["meta"]["versionId"] == "2"
    assert "errors: 0" in capsys.readouterr().out
