"""``gateway serve`` as a process: a private data directory (0700, files 0600, older
group/world-readable files fixed with a warning), a prompt exit on SIGTERM, and no
start with the compose file's old default database password."""

from __future__ import annotations

import os
import signal
import stat
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from gateway.errors import ConfigError
from gateway.runtime import _refuse_default_password
from gateway.security.files import secure_data_dir


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_serve_keeps_its_data_private_and_exits_promptly_on_sigterm(tmp_path: Path) -> None:
    data = tmp_path / "var"
    data.mkdir(mode=0o755)
    old = data / "inbox-export.csv"
    old.write_text("left by an older version")
    old.chmod(0o644)
    process = subprocess.Popen(
        [sys.executable, "-m", "gateway", "serve", "--data-dir", str(data),
         "--http-port", "0", "--mllp-port", "0"],
        stderr=subprocess.PIPE, text=True, env={**os.environ, "GATEWAY_NODE_ID": "t"})
    lines: list[str] = []
    ready = threading.Event()

    def read() -> None:
        assert process.stderr is not None
        for line in process.stderr:
            lines.append(line)
            if "gateway ready" in line:
                ready.set()

    threading.Thread(target=read, daemon=True).start()
    try:
        assert ready.wait(60), "".join(lines)
        assert mode(data) == 0o700
        assert mode(old) == 0o600
        for name in ("gateway.db", "pseudonym.key"):
            assert mode(data / name) == 0o600, name
        assert any("took group/other access away from 2 paths" in line for line in lines)
        start = time.monotonic()
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=20) == 0
        assert time.monotonic() - start < 15
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    assert any("gateway stopped" in line for line in lines)


def test_an_existing_private_data_dir_is_left_as_it_is(tmp_path: Path) -> None:
    data = tmp_path / "var"
    data.mkdir(mode=0o700)
    (data / "gateway.db").write_bytes(b"")
    (data / "gateway.db").chmod(0o600)
    assert secure_data_dir(data) == 0


def test_symbolic_links_in_the_data_dir_are_not_followed(tmp_path: Path) -> None:
    outside = tmp_path / "shared.txt"
    outside.write_text("not ours")
    outside.chmod(0o644)
    data = tmp_path / "var"
    data.mkdir(mode=0o700)
    (data / "link").symlink_to(outside)
    secure_data_dir(data)
    assert mode(outside) == 0o644


@pytest.mark.parametrize("password", ["change-me", "changeme"])
def test_a_database_url_with_the_default_password_is_refused(password: str) -> None:
    with pytest.raises(ConfigError, match="default password"):
        _refuse_default_password(f"postgresql+psycopg://gateway:{password}@db:5432/hub")


def test_a_database_url_with_a_password_of_ones_own_is_accepted() -> None:
    _refuse_default_password("postgresql+psycopg://gateway:s3cr3t-of-ours@db:5432/hub")
    _refuse_default_password("sqlite:////var/lib/gateway/gateway.db")
