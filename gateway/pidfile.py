"""``gateway.pid`` in the data directory: how command-line tools find the running gateway.

Line 1 is the process id (``kill -HUP $(head -1 var/gateway.pid)`` reloads the site files),
line 2 the base URL of its HTTP API (what ``gateway reload``, ``replay`` and ``import`` call).
Written once the listeners accept, removed on a clean stop; a file left by a crash names a
process that is gone, which ``read`` detects.
"""

from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass
from pathlib import Path

NAME = "gateway.pid"


@dataclass(frozen=True, slots=True)
class Running:
    pid: int
    url: str


def write(data_dir: Path, host: str, http_port: int) -> Path:
    path = data_dir / NAME
    shown = "127.0.0.1" if host in ("0.0.0.0", "::", "") else host  # noqa: S104 - a name
    shown = f"[{shown}]" if ":" in shown else shown
    path.write_text(f"{os.getpid()}\nhttp://{shown}:{http_port}\n", encoding="utf-8")
    return path


def remove(path: Path) -> None:
    """Remove the file if it is still this process's (another gateway may have started)."""
    with contextlib.suppress(OSError, ValueError):
        if int(path.read_text(encoding="utf-8").split()[0]) == os.getpid():
            path.unlink()


def read(data_dir: Path) -> Running | None:
    """The gateway running on ``data_dir``; None without a file or when its process is gone."""
    try:
        lines = (data_dir / NAME).read_text(encoding="utf-8").split()
        pid, url = int(lines[0]), lines[1]
    except (OSError, ValueError, IndexError):
        return None
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return None
    except PermissionError:
        pass  # alive, another user's
    return Running(pid, url)
