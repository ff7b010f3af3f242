"""Named functions that site files reference, and the tiny condition language.

A site-file override may say ``when: "OBX-3.3 = L"``: at most two clauses joined by
``and``, each ``PATH = VALUE``, ``PATH != VALUE``, ``PATH present`` or ``PATH absent``,
where PATH is a field of the segment being mapped (or of another segment of the message).
Anything more conditional is a Python function registered here by name, tested in
``tests/adapters/test_functions.py``, and referenced from YAML as ``function: NAME``.

Each function takes the source value (a string) and returns the value to use, or ``None``
to leave the target alone.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass

from gateway.hl7.parser import Message, Segment

Function = Callable[[str], str | None]
FUNCTIONS: dict[str, Function] = {}

_CLAUSE = re.compile(
    r"^\s*(?P<path>[A-Z][A-Z0-9]{2}-\d{1,3}(?:\.\d{1,2}){0,2})\s*"
    r"(?:(?P<op>!=|=)\s*(?P<value>\S(?:.*\S)?)|(?P<test>present|absent))\s*$")


def register(name: str) -> Callable[[Function], Function]:
    def decorate(function: Function) -> Function:
        FUNCTIONS[name] = function
        return function

    return decorate


@register("strip-leading-zeros")
def strip_leading_zeros(value: str) -> str | None:
    """Local LIMS codes padded with zeros (``000123``) → ``123``."""
    return value.lstrip("0") or "0" if value else None


@register("upper")
def upper(value: str) -> str | None:
    return value.strip().upper() or None


@register("before-dash")
def before_dash(value: str) -> str | None:
    """``CRP-SIERO`` → ``CRP``: the test code without the specimen suffix."""
    head = value.split("-", 1)[0].strip()
    return head or None


@register("din-without-flags")
def din_without_flags(value: str) -> str | None:
    """An ISBT 128 DIN read with its flag characters and check character (``=W1234…``):
    the 13-character DIN only, or ``None`` when it is not one."""
    text = value.strip().lstrip("=")
    return text[:13] if re.fullmatch(r"[A-Z]\d{12}.{0,3}", text) else None


@dataclass(frozen=True, slots=True)
class Clause:
    path: str
    op: str  # "=", "!=", "present", "absent"
    value: str | None = None

    def holds(self, value: str) -> bool:
        if self.op == "present":
            return value != ""
        if self.op == "absent":
            return value == ""
        return (value == self.value) is (self.op == "=")


def parse_condition(text: str) -> tuple[Clause, ...]:
    """``"OBX-3.3 = L and OBX-2 != ST"`` → clauses; ValueError names what is wrong."""
    parts = re.split(r"\s+and\s+", text.strip())
    if len(parts) > 2:
        raise ValueError("a condition has at most two clauses; write a named function instead")
    clauses = []
    for part in parts:
        match = _CLAUSE.match(part)
        if not match:
            raise ValueError(f"cannot read condition clause {part!r}: "
                             "use 'PATH = VALUE', 'PATH != VALUE', 'PATH present|absent'")
        op = match["op"] or match["test"]
        clauses.append(Clause(match["path"], op, match["value"]))
    return tuple(clauses)


def field_value(path: str, segment: Segment | None, message: Message | None = None) -> str:
    """``OBX-3.3`` of ``segment`` when it is an OBX, else of the message's first one."""
    name, _, rest = path.partition("-")
    numbers = [int(n) for n in rest.split(".")]
    numbers += [1] * (3 - len(numbers))
    if segment is not None and segment.name == name:
        return segment.get(numbers[0], numbers[1], numbers[2])
    found = message.segment(name) if message is not None else None
    return found.get(numbers[0], numbers[1], numbers[2]) if found is not None else ""


def condition_holds(text: str | None, segment: Segment | None,
                    message: Message | None = None) -> bool:
    if not text:
        return True
    return all(c.holds(field_value(c.path, segment, message)) for c in parse_condition(text))


def apply_override(source: str, when: str | None, function: str | None,
                   segment: Segment | None, message: Message | None = None) -> str | None:
    """The value an override gives for this segment, or ``None`` when it does not apply."""
    if not condition_holds(when, segment, message):
        return None
    value = field_value(source, segment, message)
    if not value:
        return None
    return FUNCTIONS[function](value) if function else value
