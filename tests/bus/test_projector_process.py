"""Role all's projector in a child process (``--projector process``, the default): real
gateways, real sockets and databases, a real child process. What a message acknowledged
over MLLP becomes in the FHIR API, what ``/admin/bus`` says of the child, and that the child
neither outlives its parent nor stays dead."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from gateway.bus.process import ProjectorProcess
from gateway.bus.settings import BusSettings
from gateway.config import Settings
from gateway.runtime import Gateway
from tests.support import hub_search, settled
from tests.test_daily_loop import oru
from tests.test_runtime import msa, send


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    with open(f"/proc/{pid}/stat") as f:  # a zombie is not alive
        return f.read().split(") ")[1].split()[0] != "Z"


async def wait_for(check: object, within: float = 20.0) -> bool:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        if check():  # type: ignore[operator]
            return True
        await asyncio.sleep(0.05)
    return False


@pytest.fixture
async def gateway(tmp_path: Path, database_url: str) -> AsyncIterator[Gateway]:
    settings = Settings(http_port=0, mllp_port=0, data_dir=tmp_path / "var",
                        database_url=database_url, bus=BusSettings(node_id="test-node"))
    assert settings.projector == "process"  # the default this file is about
    gw = Gateway(settings)
    await gw.start()
    yield gw
    await gw.stop()


def child(gw: Gateway) -> ProjectorProcess:
    assert gw.bus is not None and isinstance(gw.bus.projector, ProjectorProcess)
    return gw.bus.projector


async def bus_status(gw: Gateway) -> dict[str, object]:
    async with httpx.AsyncClient() as http:
        r = await http.get(f"http://127.0.0.1:{gw.http_port}/admin/bus")
    assert r.status_code == 200
    projector = r.json()["projector"]
    assert isinstance(projector, dict)
    return projector


async def test_an_acknowledged_message_reaches_the_api_through_the_child_process(
        gateway: Gateway) -> None:
    [ack] = await send(gateway, oru("PROC0001"))
    assert msa(ack) == ["AA", "PROC0001"]
    observations = await hub_search(gateway, "Observation", [])
    assert observations, "the child projected nothing into the hub store"
    status = await bus_status(gateway)
    process = status["process"]
    assert isinstance(process, dict)
    pid = process["pid"]
    assert isinstance(pid, int) and pid != os.getpid() and alive(pid)
    assert process["alive"] is True and process["restarts"] == 0
    # below the ingest's priority, by the configured increment
    assert os.getpriority(os.PRIO_PROCESS, pid) - os.getpriority(os.PRIO_PROCESS, 0) == 19
    assert await wait_for(lambda: child(gateway).applied >= len(observations))


async def test_a_child_that_dies_is_started_again_and_loses_nothing(gateway: Gateway) -> None:
    await send(gateway, oru("PROC0002"))
    await settled(gateway)
    first = child(gateway)
    assert await wait_for(lambda: first.applied > 0)
    applied, pid = first.applied, first.pid
    assert pid is not None
    os.kill(pid, signal.SIGKILL)
    assert await wait_for(lambda: not alive(pid))
    seen: list[object] = []  # read once: the restart (after 0.5 s) clears it
    assert await wait_for(lambda: seen.append(first.status()["last_error"]) or seen[-1],
                          within=5)
    assert "exited with code -9" in str(seen[-1])
    # acknowledged while the child is down: in the API once the new child is up
    [ack] = await send(gateway, oru("PROC0003"))
    assert msa(ack) == ["AA", "PROC0003"]
    assert await wait_for(lambda: first.restarts == 1 and first.pid != pid)
    found = await hub_search(gateway, "Provenance", [])
    assert len(found) >= 2
    assert first.status()["last_error"] is None
    assert first.applied >= applied  # a counter over every child: never goes down


async def test_the_gateway_stops_its_child(tmp_path: Path, database_url: str) -> None:
    settings = Settings(http_port=0, mllp_port=0, data_dir=tmp_path / "var",
                        database_url=database_url, bus=BusSettings(node_id="test-node"))
    gw = Gateway(settings)
    await gw.start()
    pid = child(gw).pid
    assert pid is not None and alive(pid)
    await gw.stop()
    assert not alive(pid)


async def test_inline_runs_the_projector_in_the_gateways_own_process(
        tmp_path: Path, database_url: str) -> None:
    settings = Settings(http_port=0, mllp_port=0, data_dir=tmp_path / "var",
                        database_url=database_url, projector="inline",
                        bus=BusSettings(node_id="test-node"))
    gw = Gateway(settings)
    await gw.start()
    try:
        assert gw.bus is not None and not isinstance(gw.bus.projector, ProjectorProcess)
        await send(gw, oru("PROC0004"))
        assert await hub_search(gw, "Provenance", [])
        assert "process" not in await bus_status(gw)
    finally:
        await gw.stop()


def test_the_child_does_not_outlive_a_killed_gateway(tmp_path: Path) -> None:
    """``kill -9`` of ``gateway serve``: its projector process sees its pipe close and exits."""
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "gateway", "--log-level", "WARNING", "serve",
                             "--http-port", str(port), "--mllp-port", str(free_port()),
                             "--data-dir", str(tmp_path / "var")])
    try:
        pid = None
        deadline = time.monotonic() + 60
        while pid is None and time.monotonic() < deadline:
            try:
                status = httpx.get(f"http://127.0.0.1:{port}/admin/bus", timeout=2).json()
                pid = status["projector"]["process"]["pid"]
            except (httpx.HTTPError, KeyError, TypeError):
                time.sleep(0.1)
        assert isinstance(pid, int) and alive(pid)
    finally:
        proc.kill()
        proc.wait(10)
    deadline = time.monotonic() + 10
    while alive(pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not alive(pid), "the projector process outlived its gateway"


def test_an_unknown_projector_mode_is_refused() -> None:
    from pydantic import ValidationError

    with pytest.raises(ValidationError, match="projector"):
        Settings(projector="threads")  # type: ignore[arg-type]
    with pytest.raises(ValidationError, match="projector_nice"):
        Settings(projector_nice=20)


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])
