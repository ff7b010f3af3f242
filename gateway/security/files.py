"""Private files: the data directory holds raw messages (identity data), the SQLite store
and the pseudonym key. ``serve`` runs with umask 077, so everything it creates is 0600 (a
directory 0700); ``secure_data_dir`` creates the data directory 0700 and takes group and
other access away from what an older version, or another umask, left behind (with a
warning naming how many paths, never their contents)."""

from __future__ import annotations

import logging
import os
import stat
from pathlib import Path

log = logging.getLogger(__name__)
PRIVATE_UMASK = 0o077


def private_umask() -> int:
    """Set the process umask to 077 (``gateway serve`` only); returns the previous one."""
    return os.umask(PRIVATE_UMASK)


def secure_data_dir(path: Path) -> int:
    """Create ``path`` 0700 if missing; remove group/other bits below it. Returns how many
    paths were changed. Symbolic links are neither followed nor changed."""
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    changed = refused = 0
    for item in [path, *path.rglob("*")]:
        info = item.lstat()
        if stat.S_ISLNK(info.st_mode) or not info.st_mode & 0o077:
            continue
        try:
            os.chmod(item, stat.S_IMODE(info.st_mode) & 0o700)
            changed += 1
        except PermissionError:  # another owner's file (a bind mount): say so, go on
            refused += 1
    if changed:
        log.warning("data dir %s: took group/other access away from %d paths (it holds "
                    "raw messages, the store and the pseudonym key)", path, changed)
    if refused:
        log.warning("data dir %s: %d paths readable by group/other belong to another "
                    "user and were left as they are; fix their mode", path, refused)
    return changed
