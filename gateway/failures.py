"""Inputs that a background task could not handle, counted: the drop-folder watcher, the
FHIR sources, the hub projector. Such a task logs the input by position (a file's sha256
prefix, a record's key and offset, never a value), counts it here and goes on with the next
input; ``GET /admin/counters`` serves the counts.

One ``FailureCounters`` per running gateway, handed to the tasks that report to it (no
module-level state). Thread-safe: the watcher imports on worker threads.
"""

from __future__ import annotations

import threading
from collections import Counter
from dataclasses import dataclass, field


@dataclass(slots=True)
class FailureCounters:
    _counts: Counter[tuple[str, str]] = field(default_factory=Counter)
    _last: dict[str, dict[str, str]] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def record(self, component: str, kind: str, where: str, at: str = "") -> None:
        """One failed input of ``component`` (e.g. ``drop-folder/hpg23``): ``kind`` is the
        error's type name, ``where`` its position (never a value)."""
        with self._lock:
            self._counts[(component, kind)] += 1
            self._last[component] = {"kind": kind, "where": where, "at": at}

    def total(self, component: str) -> int:
        with self._lock:
            return sum(n for (c, _), n in self._counts.items() if c == component)

    def snapshot(self) -> dict[str, dict[str, object]]:
        """``{component: {"failed": n, "by_kind": {kind: n}, "last": {kind, where, at}}}``."""
        with self._lock:
            kinds: dict[str, dict[str, int]] = {}
            for (component, kind), n in sorted(self._counts.items()):
                kinds.setdefault(component, {})[kind] = n
            return {c: {"failed": sum(k.values()), "by_kind": k, "last": dict(self._last[c])}
                    for c, k in kinds.items()}
