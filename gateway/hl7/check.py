"""Strict validation of one HL7 v2 message against the standard (``gateway check``, and sites
that opt into strict validation at ingest).

hl7apy is the reference here (speed does not matter, ~25 ms per message): its message
structures say which segments and groups a message must have, its segment definitions say
each field's datatype, cardinality and table. The field walk is ours, over the fast parser's
segments, so that every finding has an exact ERR-2 position (segment, sequence, field,
repetition, component) and so that no finding text carries a value from the message (no PHI).

    findings = check_message(text)           # list[Finding]
    errors = [f for f in findings if f.severity == "E"]

Finding codes are from HL7 table 0357: 100 segment sequence (missing/unexpected segment),
101 required field missing, 102 data type error, 103 table value not found, 200 unsupported
message type, 203 unsupported version (then checked as 2.5.1).
"""

from __future__ import annotations

import os
import re
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from gateway.errors import InboundError, Location, ParseError
from gateway.hl7.parser import Message, Segment, parse

__all__ = ["FALLBACK_VERSION", "Finding", "check_message", "inbound_errors"]

FALLBACK_VERSION = "2.5.1"
_DATATYPES: dict[str, re.Pattern[str]] = {
    "NM": re.compile(r"^[+-]?(\d+\.?\d*|\.\d+)$"),
    "SI": re.compile(r"^\d+$"),
    "DT": re.compile(r"^\d{4}(\d{2}(\d{2})?)?$"),
    "TM": re.compile(r"^\d{2}(\d{2}(\d{2}(\.\d{1,4})?)?)?([+-]\d{4})?$"),
    "DTM": re.compile(r"^\d{4}(\d{2}(\d{2}(\d{2}(\d{2}(\d{2}(\.\d{1,4})?)?)?)?)?)?([+-]\d{4})?$"),
}
_DATATYPES["TS"] = _DATATYPES["DTM"]  # TS is a leaf in v2.1–v2.4
_COMPARATOR = re.compile(r"^(<=|>=|<>|<|>|=)\s*[+-]?(\d+\.?\d*|\.\d+)$")
# Table 0396 (coding systems): local "99zzz"/"L", and UCUM (listed from v2.6, used by the
# v2.5.1 lab implementation guides) are legitimate but missing from hl7apy's 2.5.1 table.
_CODING_SYSTEMS_EXTRA = frozenset({"L", "UCUM"})
_LOCAL_SYSTEM = re.compile(r"^99[A-Z0-9]{3}$")
_OBX5_TYPES = {"NM": "NM", "DT": "DT", "DTM": "DTM", "TS": "DTM", "TM": "TM"}


@dataclass(frozen=True, slots=True)
class Finding:
    """One problem: severity (E/W/I, table 0516), ERR-2 location, text, table 0357 code."""

    severity: str
    location: Location
    text: str
    err_code: str

    @property
    def message(self) -> str:  # what ack.render_err reads
        return self.text

    def __str__(self) -> str:
        loc = self.location
        where = loc.segment if loc.sequence in (None, 1) else f"{loc.segment}[{loc.sequence}]"
        if loc.field is not None:
            where += f"-{loc.field}"
            if loc.repetition not in (None, 1):
                where += f"({loc.repetition})"
            if loc.component is not None:
                where += f".{loc.component}"
        return f"{self.severity} {self.err_code} {where}: {self.text}"


def check_message(text: str | bytes, version: str | None = None) -> list[Finding]:
    """Validate one message: header, structure (segments and groups), fields (required,
    datatype, HL7 table). ``version`` overrides MSH-12."""
    try:
        msg = parse(text)
    except ParseError as exc:
        return [_from_error(exc)]
    findings: list[Finding] = []
    wanted = version or msg.version or FALLBACK_VERSION
    use = _supported(wanted)
    if use != wanted:
        findings.append(Finding("W", Location("MSH", 1, 12), f"version {wanted or '(empty)'} "
                                f"is not known to the validator: checked as {use}", "203"))
    findings += _check_structure(msg, use)
    findings += _check_fields(msg, use)
    return findings


_REJECT_CODES = frozenset({"200", "201", "202", "203"})


def inbound_errors(text: str | bytes) -> list[InboundError]:
    """The error findings of ``check_message`` as InboundErrors, for strict sites at ingest:
    AR for unsupported message type/event/processing id/version, AE otherwise."""
    out: list[InboundError] = []
    for f in check_message(text):
        if f.severity not in ("E", "F"):
            continue
        loc = f.location
        err = InboundError(f"strict validation: {f.text}", segment=loc.segment,
                           field=loc.field, component=loc.component, sequence=loc.sequence,
                           code=f.err_code, ack_code="AR" if f.err_code in _REJECT_CODES
                           else "AE")
        err.location = loc  # keeps the repetition too
        out.append(err)
    return out


def _from_error(exc: InboundError) -> Finding:
    return Finding("E", exc.location or Location("MSH"), exc.message, exc.err_code)


def _supported(version: str) -> str:
    from hl7apy import SUPPORTED_LIBRARIES

    return version if version in SUPPORTED_LIBRARIES else FALLBACK_VERSION


# --- structure (hl7apy) ------------------------------------------------------------------

_MISSING = re.compile(r"^Missing required child (\S+)\.(\w+)$")
_TOO_MANY = re.compile(r"^Child limit exceeded (\S+)\.(\w+)$")
_INVALID = re.compile(r"^Invalid children detected for <(Message|Group) [^>]*>: \[(.*)\]$")
_SEGMENT_ID = re.compile(r"^[A-Z][A-Z0-9]{2}$")
_FIELD_OR_TYPE = re.compile(r"^([A-Z][A-Z0-9]{2}|[A-Z][A-Z0-9]{2}_\d+)$")


def _check_structure(msg: Message, version: str) -> list[Finding]:
    if not msg.message_code:
        return [Finding("E", Location("MSH", 1, 9), "MSH-9 message type is empty", "101")]
    if msg.message_code.startswith("Z"):
        return [Finding("W", Location("MSH", 1, 9, 1), f"{msg.message_type} is a local (Z) "
                        "message type: its structure is not checked", "200")]
    report = _hl7apy_report(_for_hl7apy(msg, version))
    if report is None:
        return [Finding("E", Location("MSH", 1, 9, 1), f"message type {msg.message_type} "
                        f"has no structure in HL7 v{version}", "200")]
    findings: list[Finding] = []
    for line in report:
        findings += [f for f in _structure_finding(line) if f not in findings]
    return findings


def _for_hl7apy(msg: Message, version: str) -> str:
    """The message rewritten for hl7apy: standard 4 encoding characters, MSH-12 = version."""
    lines: list[str] = []
    for seg in msg.segments:
        fields = list(seg.fields)
        if seg.name == "MSH":
            fields[2] = fields[2][:4]
            while len(fields) < 13:
                fields.append("")
            fields[12] = version
            lines.append("MSH" + fields[1] + fields[1].join(fields[2:]))
        else:
            lines.append(msg.enc.field.join(fields))
    return "\r".join(lines) + "\r"


def _hl7apy_report(text: str) -> list[str] | None:
    """hl7apy's validation report lines; None when it cannot even build the message."""
    from hl7apy.consts import VALIDATION_LEVEL
    from hl7apy.exceptions import HL7apyException
    from hl7apy.parser import parse_message
    from hl7apy.validation import Validator

    try:
        parsed = parse_message(text, validation_level=VALIDATION_LEVEL.TOLERANT,
                               find_groups=True)
    except HL7apyException:
        return None
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "report.txt")
        try:
            Validator.validate(parsed, report_file=path)
        except (HL7apyException, ValueError, TypeError, KeyError, AttributeError):
            pass
        with open(path, encoding="utf-8") as fh:
            lines = [ln.strip() for ln in fh if ln.startswith("Error: ")]
    if any("Unknown element found: None.<Message" in ln for ln in lines):
        return None
    return [ln[len("Error: "):] for ln in lines]


def _structure_finding(line: str) -> list[Finding]:
    """Segment-level findings only (groups and segments of the message structure); field and
    datatype lines are left to the field walk, which knows exact positions."""
    for pattern, what in ((_MISSING, "required segment {} is missing"),
                          (_TOO_MANY, "segment {} repeats more often than the structure allows")):
        match = pattern.match(line)
        if match and not _FIELD_OR_TYPE.match(match.group(1)):
            child = match.group(2)
            seg = child if _SEGMENT_ID.match(child) else child.rsplit("_", 1)[-1][:3]
            name = child if _SEGMENT_ID.match(child) else f"group {child}"
            return [Finding("E", Location(seg, None), what.format(name), "100")]
    invalid = _INVALID.match(line)
    if invalid:
        names = [n.strip(" '\"") for n in invalid.group(2).split(",")]
        return [Finding("E", Location(n, None), f"segment {n} is not allowed here by the "
                        "message structure", "100") for n in names if _SEGMENT_ID.match(n)]
    return []


# --- fields (our walk, hl7apy's segment definitions) -------------------------------------


def _check_fields(msg: Message, version: str) -> list[Finding]:
    findings: list[Finding] = []
    seen: dict[str, int] = {}
    for seg in msg.segments:
        seen[seg.name] = seen.get(seg.name, 0) + 1
        ref = _segment_ref(seg.name, version)
        if ref is None:
            if not seg.name.startswith("Z"):
                findings.append(Finding("E", Location(seg.name, seen[seg.name]),
                                        f"segment {seg.name} is not defined in HL7 v{version}",
                                        "100"))
            continue
        for n, field_ref in enumerate(ref, start=1):
            if not (seg.name == "MSH" and n in (9, 12)):  # checked by structure and version
                findings += _check_field(seg, seen[seg.name], n, field_ref, version)
    return findings


def _segment_ref(name: str, version: str) -> Sequence[Any] | None:
    if name.startswith("Z"):
        return None
    from hl7apy import load_reference
    from hl7apy.exceptions import ChildNotFound

    try:
        ref = load_reference(name, "Segment", version)
    except ChildNotFound:
        return None
    return [child[1:] for child in ref[1]]  # (structure, cardinality, kind) per field


def _check_field(seg: Segment, seq: int, n: int, field_ref: Sequence[Any],
                 version: str) -> list[Finding]:
    structure, (min_reps, _max), _ = field_ref
    if seg.name in ("MSH", "BHS", "FHS") and n <= 2:
        return []
    raw = seg.raw(n)
    if not raw or raw == '""':
        if min_reps >= 1:
            return [Finding("E", Location(seg.name, seq, n), f"{seg.name}-{n} "
                            f"({_field_name(structure)}) is required", "101")]
        return []
    findings: list[Finding] = []
    for r, rep in enumerate(raw.split(seg.enc.repetition), start=1):
        loc = (seg.name, seq, n, r)
        if seg.name == "OBX" and n == 5:
            findings += _check_obx5(seg, loc, rep)
        else:
            findings += _check_value(seg, loc, rep, structure, version, depth=0)
    return findings


def _field_name(structure: Sequence[Any]) -> str:
    return str(structure[3] or "").replace("_", " ").lower()


def _check_value(seg: Segment, loc: tuple[str, int, int, int], value: str,
                 structure: Sequence[Any], version: str, depth: int,
                 comp: int | None = None) -> list[Finding]:
    kind, dtype = structure[0], structure[2]
    if kind == "leaf":
        return _check_leaf(seg, loc, value, dtype, structure[4], version, comp)
    if depth >= 1:
        return []  # sub-components: not checked
    findings: list[Finding] = []
    parts = value.split(seg.enc.component)
    for i, (child, part) in enumerate(zip(structure[1], parts, strict=False), start=1):
        if part and part != '""':
            findings += _check_value(seg, loc, part.split(seg.enc.subcomponent)[0], child[1],
                                     version, depth + 1, comp=i)
    return findings


def _check_leaf(seg: Segment, loc: tuple[str, int, int, int], value: str, dtype: str | None,
                table: str | None, version: str, comp: int | None) -> list[Finding]:
    where = Location(loc[0], loc[1], loc[2], comp, loc[3])
    path = f"{loc[0]}-{loc[2]}" + (f".{comp}" if comp else "")
    pattern = _DATATYPES.get(dtype or "")
    if pattern is not None and not pattern.match(value):
        return [Finding("E", where, f"{path} is not a valid {dtype}", "102")]
    if dtype == "ID" and table and not _in_table(value, table, version):
        number = table.removeprefix("HL7")
        return [Finding("W", where, f"{path}: code not in HL7 table {number}", "103")]
    return []


def _in_table(value: str, table: str, version: str) -> bool:
    from hl7apy import load_reference
    from hl7apy.exceptions import ChildNotFound

    try:
        codes = load_reference(table, "Table", version)[1]
    except ChildNotFound:
        return True  # the validator does not know the table: nothing to say
    if table == "HL70396" and (value in _CODING_SYSTEMS_EXTRA or _LOCAL_SYSTEM.match(value)):
        return True
    return not codes or any(value in code.split(",") for code in codes)


def _check_obx5(seg: Segment, loc: tuple[str, int, int, int], value: str) -> list[Finding]:
    """OBX-5 takes the datatype named in OBX-2."""
    vtype = _OBX5_TYPES.get(seg.get(2).upper())
    first = value.split(seg.enc.component)[0]
    pattern = _DATATYPES.get(vtype or "")
    if pattern is None or pattern.match(first):
        return []
    where = Location(loc[0], loc[1], 5, None, loc[3])
    if vtype == "NM" and _COMPARATOR.match(first.strip()):
        return [Finding("W", where, "OBX-5 has a comparator in an NM value: OBX-2 should "
                        "be SN (accepted, mapped to Quantity.comparator)", "102")]
    return [Finding("E", where, f"OBX-5 is not a valid {vtype} (OBX-2 is {seg.get(2)})", "102")]
