"""``gateway check FILE…``: validate HL7 v2 messages against the standard (hl7apy).

Prints each finding with its position (file, message number, segment, field)::

    lab.hl7#1 E 101 PID-3: PID-3 (patient identifier list) is required

Exit status: 0 when no finding is an error (warnings are printed but pass), 1 otherwise,
2 when a file cannot be read.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from gateway.hl7.check import check_message
from gateway.hl7.parser import split_messages


def register(subparsers: Any) -> None:
    p = subparsers.add_parser("check", help="validate HL7 v2 files against the standard",
                              description=__doc__,
                              formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("files", nargs="+", type=Path, metavar="FILE")
    p.add_argument("--version", dest="hl7_version", default=None,
                   help="check as this HL7 version instead of MSH-12 (e.g. 2.5.1)")
    p.add_argument("--errors-only", action="store_true", help="do not print warnings")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    status = 0
    for path in args.files:
        try:
            messages = split_messages(path.read_bytes())
        except OSError as exc:
            _err(f"gateway check: cannot read {path}: {exc.strerror}")
            return 2
        if not messages:
            _out(f"{path.name}: E 100 no MSH segment: not an HL7 v2 message")
            status = 1
        for n, text in enumerate(messages, start=1):
            findings = check_message(text, version=args.hl7_version)
            errors = sum(f.severity in ("E", "F") for f in findings)
            for finding in findings:
                if finding.severity in ("E", "F") or not args.errors_only:
                    _out(f"{path.name}#{n} {finding}")
            status = 1 if errors else status
            _out(f"{path.name}#{n}: {errors} error(s), {len(findings) - errors} other finding(s)")
    return status


def _out(line: str) -> None:
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


def _err(line: str) -> None:
    sys.stderr.write(line + "\n")
