"""HL7 v2 acknowledgments (HL7 v2.5.1 chapter 2: 2.9 acknowledgment rules, MSH, MSA, ERR).

Pure functions: the caller passes the control id and the timestamp.

    header = AckHeader.from_message(msg)        # or AckHeader.from_raw(bytes) when unparseable
    for code in ack_plan(header, outcome_of(errors)):
        text = render_ack(header, code, errors, control_id=new_control_id(), timestamp=now)

Acknowledgment modes (tables 0008 and 0155):

- Original mode (MSH-15 and MSH-16 both empty): one application ACK, AA / AE / AR.
- Enhanced mode (either valued): first the accept (commit) ACK, CA / CE / CR, sent when
  MSH-15 asks for it (AL always, NE never, ER only on error, SU only on success); then the
  application ACK, AA / AE / AR, when MSH-16 asks for it under the same rules. An empty
  MSH-15 or MSH-16 next to a valued one counts as NE. Both go back on the same MLLP
  connection, commit ACK first.

What the codes mean at this gateway: CA/AA = the message is stored durably (and mapped);
AE = stored, but it could not be processed (kept as an error, replayable once fixed); CE = not
accepted now, resend later (e.g. overloaded); AR/CR = rejected, fix the message or the
configuration before resending. A rejected commit is not followed by an application ACK; when
MSH-15 forbids the commit reject (NE/SU) the rejection goes out as the application ACK instead
(if MSH-16 allows one), so that a refused message is answered whenever the sender asked for
any answer.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Protocol

from gateway.errors import InboundError, Location
from gateway.hl7.parser import CHARSETS, DEFAULT_ENCODING, Encoding, Message, decode, escape

__all__ = [
    "HL7_ERROR_CODES",
    "AckHeader",
    "ErrorLike",
    "ack_plan",
    "build_acks",
    "encode_ack",
    "new_control_id",
    "outcome_of",
    "oversize_error",
    "render_ack",
    "render_err",
]

# HL7 table 0357 (message error condition codes), v2.5.1.
HL7_ERROR_CODES: dict[str, str] = {
    "0": "Message accepted",
    "100": "Segment sequence error",
    "101": "Required field missing",
    "102": "Data type error",
    "103": "Table value not found",
    "200": "Unsupported message type",
    "201": "Unsupported event code",
    "202": "Unsupported processing id",
    "203": "Unsupported version id",
    "204": "Unknown key identifier",
    "205": "Duplicate key identifier",
    "206": "Application record locked",
    "207": "Application internal error",
}
DEFAULT_VERSION = "2.5.1"
_APP_CODES = {"AA", "AE", "AR"}
_COMMIT_OF = {"AA": "CA", "AE": "CE", "AR": "CR"}


class ErrorLike(Protocol):
    """What an ERR segment needs; ``gateway.errors.InboundError`` has it."""

    @property
    def err_code(self) -> str: ...
    @property
    def location(self) -> Location | None: ...
    @property
    def message(self) -> str: ...
    @property
    def severity(self) -> str: ...


@dataclass(frozen=True, slots=True)
class AckHeader:
    """The parts of an inbound MSH an acknowledgment needs (raw ER7, the message's delimiters)."""

    enc: Encoding = DEFAULT_ENCODING
    sending_application: str = ""  # MSH-3
    sending_facility: str = ""  # MSH-4
    receiving_application: str = ""  # MSH-5
    receiving_facility: str = ""  # MSH-6
    trigger_event: str = ""  # MSH-9.2
    control_id: str = ""  # MSH-10, echoed in MSA-2
    processing_id: str = "P"  # MSH-11
    version: str = DEFAULT_VERSION  # MSH-12 (raw, may carry components)
    accept_ack_type: str = ""  # MSH-15
    application_ack_type: str = ""  # MSH-16
    charset: str = ""  # MSH-18 (raw)

    @classmethod
    def from_message(cls, msg: Message) -> AckHeader:
        return cls.from_fields(msg.enc, msg.msh.fields)

    @classmethod
    def from_fields(cls, enc: Encoding, fields: Sequence[str]) -> AckHeader:
        """From MSH fields numbered as the standard does (``fields[n]`` is MSH-n)."""

        def f(n: int) -> str:
            return fields[n] if n < len(fields) else ""

        def rep1(n: int) -> str:
            return f(n).split(enc.repetition, 1)[0]

        def code(n: int) -> str:
            return rep1(n).split(enc.component, 1)[0].strip().upper()

        trigger = rep1(9).split(enc.component)
        return cls(enc, rep1(3), rep1(4), rep1(5), rep1(6),
                   trigger[1] if len(trigger) > 1 else "", rep1(10).strip(),
                   rep1(11) or "P", rep1(12) or DEFAULT_VERSION, code(15), code(16), rep1(18))

    @classmethod
    def from_raw(cls, raw: bytes) -> AckHeader:
        """Best effort for bytes that did not parse: whatever MSH fields can be found."""
        text = decode(raw)[0]
        start = text.find("MSH")
        if start < 0 or len(text) < start + 8:
            return cls()
        line = text[start:].replace("\n", "\r").split("\r", 1)[0]
        if len(line) < 8:  # "MSH" alone on its line: no delimiters to read
            return cls()
        sep = line[3]
        if sep.isalnum() or sep.isspace():
            return cls()
        chars = line[4:].split(sep, 1)[0]
        if not chars or any(not c.isprintable() or c.isalnum() or c.isspace() for c in chars):
            return cls()
        enc = Encoding.from_msh2(sep, chars[:5])
        parts = line.split(sep)
        return cls.from_fields(enc, ["MSH", sep, *parts[1:]])

    @property
    def version_id(self) -> str:
        """MSH-12.1, e.g. ``2.5.1``."""
        return self.version.split(self.enc.component, 1)[0].strip() or DEFAULT_VERSION

    @property
    def enhanced(self) -> bool:
        return bool(self.accept_ack_type or self.application_ack_type)

    @property
    def codec(self) -> str:
        return CHARSETS.get(self.charset.strip().upper(), "utf-8")


def _version_tuple(version: str) -> tuple[int, ...]:
    out: list[int] = []
    for part in version.split("."):
        if not part.isdigit():
            break
        out.append(int(part))
    return tuple(out) or (2, 5, 1)


def outcome_of(errors: Iterable[ErrorLike]) -> str:
    """AA, AE or AR from the errors found (the ``ack_code`` of each, E/F severities only)."""
    codes = {getattr(e, "ack_code", "AE") for e in errors if e.severity in ("E", "F")}
    return "AR" if "AR" in codes else ("AE" if codes else "AA")


def _wants(condition: str, success: bool) -> bool:
    return condition == "AL" or (condition == "ER" and not success) or (
        condition == "SU" and success)


def ack_plan(header: AckHeader, outcome: str, *, retriable: bool = False) -> list[str]:
    """The acknowledgment codes to send, in order, for ``outcome`` (AA, AE or AR).

    ``retriable``: the message was not stored (e.g. overloaded); in enhanced mode that is a
    commit error (CE: "resend later") rather than CA + AE.
    """
    if outcome not in _APP_CODES:
        raise ValueError(f"unknown outcome {outcome!r}")
    if not header.enhanced:
        return [outcome]
    accept = header.accept_ack_type or "NE"
    app = header.application_ack_type or "NE"
    commit = "CE" if retriable else ("CR" if outcome == "AR" else "CA")
    plan: list[str] = []
    if _wants(accept, commit == "CA"):
        plan.append(commit)
    if commit == "CA" or not plan:
        if _wants(app, outcome == "AA"):
            plan.append(outcome)
    return plan


def new_control_id() -> str:
    """A fresh MSH-10 (20 characters: the v2.5.1 length of ST in MSH-10)."""
    return uuid.uuid4().hex[:20].upper()


def format_ts(ts: datetime) -> str:
    """DTM with seconds and offset, e.g. ``20261127101500+0000``."""
    if ts.tzinfo is None:
        ts = ts.replace(tzinfo=UTC)
    return ts.strftime("%Y%m%d%H%M%S%z")


def render_ack(header: AckHeader, code: str, errors: Iterable[ErrorLike] = (), *,
               control_id: str, timestamp: datetime, text: str | None = None) -> str:
    """The ACK in ER7 (segments separated by CR, ending with CR), in the message's delimiters."""
    enc = header.enc
    old = _version_tuple(header.version_id) < (2, 5)
    errs = list(errors)
    segments = [_msh(header, control_id, timestamp),
                _msa(header, code, text if text is not None
                     else (errs[0].message if old and errs else None))]
    segments += [render_err(e, enc, legacy=old) for e in errs]
    return "\r".join(segments) + "\r"


def _msh(header: AckHeader, control_id: str, timestamp: datetime) -> str:
    enc, sep = header.enc, header.enc.field
    with_structure = _version_tuple(header.version_id) >= (2, 3, 1)
    msh9 = enc.component.join(["ACK", header.trigger_event] + (["ACK"] if with_structure else []))
    if not header.trigger_event and not with_structure:
        msh9 = "ACK"
    fields = ["MSH", enc.msh2, header.receiving_application, header.receiving_facility,
              header.sending_application, header.sending_facility, format_ts(timestamp), "",
              msh9, escape(control_id, enc), header.processing_id, header.version,
              "", "", "", "", "", header.charset]
    return _join_msh(fields, sep)


def _join_msh(fields: list[str], sep: str) -> str:
    # fields[n] is MSH-(n+1): MSH-1 is the separator itself. Trailing empties after MSH-12 go.
    while len(fields) > 12 and not fields[-1]:
        fields.pop()
    return "MSH" + sep + sep.join(fields[1:])


def _msa(header: AckHeader, code: str, text: str | None) -> str:
    sep = header.enc.field
    fields = ["MSA", code, header.control_id]
    if text:
        fields.append(escape(text[:80], header.enc))
    return sep.join(fields)


def _erl(loc: Location | None, enc: Encoding) -> str:
    """ERR-2 (ERL): segment ^ sequence ^ field ^ field repetition ^ component ^ sub-component."""
    if loc is None:
        return ""
    parts = [loc.segment, str(loc.sequence or 1)]
    if loc.field is not None:
        parts += [str(loc.field), str(loc.repetition or 1)]
        if loc.component is not None:
            parts.append(str(loc.component))
    return enc.component.join(parts)


def _cwe_0357(code: str, enc: Encoding, joiner: str) -> str:
    return joiner.join([code, escape(HL7_ERROR_CODES.get(code, "Application error"), enc),
                        "HL70357"])


def render_err(error: ErrorLike, enc: Encoding = DEFAULT_ENCODING, *, legacy: bool = False) -> str:
    """One ERR segment. ``legacy`` (v2.3/v2.4 receivers): also ERR-1 (ELD), the only ERR
    field those versions define: segment ^ sequence ^ field ^ code&text&HL70357."""
    loc, sep = error.location, enc.field
    err1 = ""
    if legacy:
        eld = [loc.segment if loc else "", str(loc.sequence or 1) if loc else "",
               str(loc.field) if loc and loc.field is not None else "",
               _cwe_0357(error.err_code, enc, enc.subcomponent)]
        err1 = enc.component.join(eld)
    fields = ["ERR", err1, _erl(loc, enc), _cwe_0357(error.err_code, enc, enc.component),
              error.severity or "E", "", "", "", escape(error.message, enc)]
    return sep.join(fields)


def encode_ack(text: str, charset: str = "") -> bytes:
    """ACK text → bytes in the message's charset (an MSH-18 value or a Python codec)."""
    codec = CHARSETS.get(charset.strip().upper(), charset or "utf-8")
    try:
        return text.encode(codec, errors="replace")
    except LookupError:
        return text.encode("utf-8")


def oversize_error(limit: int) -> InboundError:
    """The error for a block longer than ``limit`` bytes (AR, 207, at the MSH)."""
    return InboundError(f"message larger than the {limit} bytes this gateway accepts; "
                        "split it or ask for a larger limit", segment="MSH", field=None,
                        code="207", ack_code="AR")


def build_acks(header: AckHeader, errors: Sequence[ErrorLike] = (), *,
               timestamp: datetime | None = None, retriable: bool = False) -> list[str]:
    """Every ACK to send for this outcome, rendered, in order (fresh control ids)."""
    now = timestamp or datetime.now(UTC)
    plan = ack_plan(header, outcome_of(errors), retriable=retriable)
    return [render_ack(header, code, () if code == "CA" else errors,
                       control_id=new_control_id(), timestamp=now) for code in plan]
