"""No patient value in any log line of the whole test run (issue 13).

``Capture`` is a logging handler installed on the root logger for the whole session
(tests/conftest.py); at the end ``findings`` greps every record it saw, and the output of
gateways run as subprocesses (``add_output``), for the identity strings of the test
messages: names, identifiers (MRN, codice fiscale) and birth dates from the PID segments of
the sample messages (gateway/sites/samples, tests/samples) and of the messages written
inline in the tests' sources. Collected from the PID fields, not listed by hand.
"""

from __future__ import annotations

import logging
import re
import traceback
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SAMPLE_DIRS = (ROOT / "gateway" / "sites" / "samples", ROOT / "tests" / "samples")
INLINE_PID = re.compile(r"PID\|[^\"'\\\n]*")
# PID-3 identifiers (CX.1), PID-5/PID-6/PID-9 names (XPN.1, .2, .3), PID-7 birth date,
# PID-19 SSN, PID-20 driver's licence
IDENTIFIERS, NAMES, BIRTH = (3, 19, 20), (5, 6, 9), 7


def pid_lines(text: str) -> Iterator[str]:
    for line in re.split(r"[\r\n]+|\\r|\\n", text):
        yield from (m.group(0) for m in INLINE_PID.finditer(line))


def identity_of(pid: str) -> set[str]:
    """The identity strings of one PID segment (template placeholders left out)."""
    fields = pid.split("|")
    found: set[str] = set()

    def reps(n: int) -> list[list[str]]:
        value = fields[n] if n < len(fields) else ""
        return [r.split("^") for r in value.split("~") if r]

    for n in IDENTIFIERS:
        found.update(r[0] for r in reps(n))
    for n in NAMES:
        found.update(c for r in reps(n) for c in r[:3])
    for r in reps(BIRTH):
        date = r[0][:8]
        found.add(date)
        if len(date) == 8 and date.isdigit():
            found.add(f"{date[:4]}-{date[4:6]}-{date[6:]}")
    return {s.strip() for s in found if _distinctive(s.strip())}


# placeholder names some inline test messages use ("Patient^Sample"): the gateway's own
# vocabulary, in every other log line
VOCABULARY = frozenset({"Patient", "Sample", "Test"})


def _distinctive(value: str) -> bool:
    """Long enough not to occur in a log line by chance (a year, "A", "X1" would)."""
    if not value or "{" in value or "}" in value or value in VOCABULARY:
        return False
    digits = value.replace("-", "")
    if digits.isdigit():
        return len(digits) >= 8
    return len(value) >= 4


def identity_strings(extra_sources: Iterable[Path] = ()) -> set[str]:
    strings: set[str] = set()
    files = [p for d in SAMPLE_DIRS for p in sorted(d.rglob("*.hl7"))]
    for path in [*files, *extra_sources]:
        text = path.read_bytes().decode("utf-8", "replace")
        for pid in pid_lines(text):
            strings |= identity_of(pid)
    return strings


def test_sources() -> list[Path]:
    return sorted((ROOT / "tests").rglob("*.py"))


@dataclass
class Finding:
    where: str  # logger name, or the subprocess output's name
    position: int  # index of the record in the run (line number for outputs)
    value: str
    excerpt: str


class Capture(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[tuple[str, str]] = []  # (logger, text)
        self.outputs: list[tuple[str, str]] = []  # (name, text)
        self.files: list[tuple[str, Path]] = []

    def emit(self, record: logging.LogRecord) -> None:
        try:
            text = record.getMessage()
        except Exception:  # a bad format string still has its arguments to check
            text = f"{record.msg} {record.args}"
        if record.exc_info and record.exc_info[1] is not None:
            text += "\n" + "".join(traceback.format_exception_only(record.exc_info[1]))
        self.records.append((record.name, text))

    def add_output(self, name: str, text: str) -> None:
        """The stdout/stderr of a gateway run as a subprocess."""
        self.outputs.append((name, text))

    def add_file(self, name: str, path: Path) -> None:
        """A file a subprocess writes its log to: read when the session ends."""
        self.files.append((name, path))

    def findings(self, identities: Iterable[str]) -> list[Finding]:
        values = sorted(set(identities), key=len, reverse=True)
        if not values:
            return []
        # as written in the messages (names come in both cases there); whole words only
        pattern = re.compile(r"(?<![\w-])(" + "|".join(map(re.escape, values)) + r")(?![\w-])")
        found = []
        for i, (name, text) in enumerate(self.records):
            if m := pattern.search(text):
                found.append(Finding(name, i, m.group(1), _excerpt(text, m)))
        outputs = self.outputs + [(name, path.read_text("utf-8", "replace"))
                                  for name, path in self.files if path.exists()]
        for name, text in outputs:
            for n, line in enumerate(text.splitlines(), 1):
                if m := pattern.search(line):
                    found.append(Finding(name, n, m.group(1), _excerpt(line, m)))
        return found


def _excerpt(text: str, m: re.Match[str]) -> str:
    return text[max(0, m.start() - 60):m.end() + 60].replace("\n", " ")


CAPTURE = Capture()
