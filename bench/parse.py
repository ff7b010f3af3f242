"""Parse benchmark: the 2 KB ORU^R01 with 10 OBX (tests/samples/oru_r01_10obx.hl7).

Our parser (parse + touching every OBX value, as the mapping does) against a naive split and
hl7apy, measured in the same run. Budget: ≤ 0.3 ms per message on one core.

    .venv/bin/python bench/parse.py [-n 20000] [--hl7apy-n 30]
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from pathlib import Path

from gateway.hl7.parser import parse

SAMPLE = Path(__file__).resolve().parent.parent / "tests" / "samples" / "oru_r01_10obx.hl7"
BUDGET_US = 300.0


def per_message_us(func: Callable[[], object], n: int) -> float:
    func()  # warm up
    best = float("inf")
    for _ in range(3):
        start = time.perf_counter()
        for _ in range(n):
            func()
        best = min(best, (time.perf_counter() - start) / n * 1e6)
    return best


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("-n", type=int, default=20_000)
    ap.add_argument("--hl7apy-n", type=int, default=30)
    args = ap.parse_args()
    raw = SAMPLE.read_bytes().replace(b"\n", b"\r")
    text = raw.decode()

    def ours_bytes() -> object:
        return parse(raw)

    def ours_and_values() -> object:
        msg = parse(raw)
        return [(o.get(3, 1), o.get(5), o.get(6, 1)) for o in msg.all("OBX")] + [
            msg.get("PID-3.1"), msg.control_id]

    def naive() -> object:
        return [s.split("|") for s in text.split("\r")]

    def hl7apy_parse() -> object:
        from hl7apy.parser import parse_message
        return parse_message(text, find_groups=True)

    rows = [
        ("naive split (str)", per_message_us(naive, args.n)),
        ("gateway parse (bytes)", per_message_us(ours_bytes, args.n)),
        ("gateway parse + OBX-3/5/6, PID-3", per_message_us(ours_and_values, args.n)),
        ("hl7apy parse_message", per_message_us(hl7apy_parse, args.hl7apy_n)),
    ]
    naive_us = rows[0][1]
    print(f"sample: {SAMPLE.name}, {len(raw)} bytes, {text.count('OBX|')} OBX")
    for name, us in rows:
        print(f"{name:34s} {us:9.1f} µs/msg {1e6 / us:10.0f} msg/s  {us / naive_us:6.1f}× naive")
    ours = rows[2][1]
    verdict = "within" if ours <= BUDGET_US else "OVER"
    print(f"budget {BUDGET_US:.0f} µs/msg: {verdict} ({ours:.1f} µs)")


if __name__ == "__main__":
    main()
