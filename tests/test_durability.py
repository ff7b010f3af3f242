"""A real ``gateway serve`` process: kill -9 loses no acknowledged message; SIGTERM closes
cleanly after finishing what is in flight."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx

from gateway.hl7.mllp import MllpClient
from gateway.hl7.parser import parse
from gateway.store.sql import SqlStore
from tests import logcheck
from tests.test_runtime import oru


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start_serve(data_dir: Path, log_format: str = "text"
                ) -> tuple[subprocess.Popen[bytes], int, int]:
    """``gateway serve`` as a process; its log (INFO: access lines too) goes to a file
    beside ``data_dir`` that the session's log check greps for patient data."""
    mllp, http = free_port(), free_port()
    env = {**os.environ, "GATEWAY_DATA_DIR": str(data_dir)}
    data_dir.parent.mkdir(parents=True, exist_ok=True)
    log_file = data_dir.parent / f"serve-{mllp}.log"
    logcheck.CAPTURE.add_file(f"gateway serve ({log_file.name})", log_file)
    with log_file.open("wb") as stderr:
        proc = subprocess.Popen(
            [sys.executable, "-m", "gateway", "--log-level", "INFO", "--log-format", log_format,
             "serve", "--mllp-port", str(mllp), "--http-port", str(http)],
            env=env, stderr=stderr)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        assert proc.poll() is None, "gateway serve exited at start"
        try:
            if httpx.get(f"http://127.0.0.1:{http}/healthz", timeout=1).status_code == 200:
                return proc, mllp, http
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    proc.kill()
    raise AssertionError("gateway serve did not become healthy")


async def send_until_killed(port: int, proc: subprocess.Popen[bytes], kill_after: int,
                            acked: list[str]) -> None:
    client = await MllpClient.connect("127.0.0.1", port, timeout=5)
    try:
        for i in range(100_000):
            cid = f"K{i:06d}"
            if len(acked) == kill_after:
                # the next message goes out and the process dies while handling it
                client._writer.write(b"\x0b" + oru(cid) + b"\x1c\r")
                proc.send_signal(signal.SIGKILL)
                return
            [answer] = await client.send(oru(cid))
            if parse(answer).segment("MSA").get(1) == "AA":
                acked.append(cid)
    finally:
        await client.close()


def test_kill_9_at_any_moment_loses_no_acknowledged_message(tmp_path: Path) -> None:
    data = tmp_path / "var"
    proc, mllp, _ = start_serve(data)
    acked: list[str] = []
    try:
        asyncio.run(send_until_killed(mllp, proc, 40, acked))
        proc.wait(10)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == -signal.SIGKILL and len(acked) == 40
    store = SqlStore(f"sqlite:///{data / 'gateway.db'}")
    try:
        for cid in acked:
            record = store.inbox_find("LAB", "HPG23", cid)
            assert record is not None and record.status == "processed", cid
            for ref in record.resource_refs:
                rtype, rid = ref.split("/")[:2]
                assert store.read(rtype, rid) is not None, ref
    finally:
        store.close()
    # and the restarted gateway answers the resend of an acknowledged message the same way
    proc, mllp, _ = start_serve(data)
    try:
        answers = asyncio.run(_send_one(mllp, oru(acked[-1])))
        assert parse(answers[0]).segment("MSA").get(1) == "AA"
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(20)


async def _send_one(port: int, message: bytes) -> list[bytes]:
    async with await MllpClient.connect("127.0.0.1", port, timeout=10) as client:
        return await client.send(message)


def test_sigterm_finishes_in_flight_work_and_exits_cleanly(tmp_path: Path) -> None:
    proc, mllp, _ = start_serve(tmp_path / "var", log_format="json")
    answers = asyncio.run(_send_one(mllp, oru("T0001")))
    assert parse(answers[0]).segment("MSA").get(1) == "AA"
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(20) == 0
    # --log-format json: one object per line; the message's access line without MSH-10
    [log_file] = tmp_path.glob("serve-*.log")
    lines = [json.loads(line) for line in log_file.read_text().splitlines()]
    [access] = [e["access"] for e in lines if e.get("access", {}).get("kind") == "mllp"]
    assert access["type"] == "ORU^R01" and access["ack"] == "AA"
    assert access["site"] == "hpg23" and access["msh10"].startswith("msh10#")
    assert "T0001" not in log_file.read_text()
