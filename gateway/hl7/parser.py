"""Fast, tolerant HL7 v2 ER7 parser.

One pass over the segments with ``str.split``; components and sub-components are split
only when asked for, and escape sequences are decoded only in values that contain the
escape character. Field numbering follows the standard: for ``MSH``/``FHS``/``BHS`` the
field separator itself is field 1, so ``seg.raw(9)`` is MSH-9 everywhere.

    msg = parse(data)               # bytes or str
    msg.get("PID-3.1")              # first repetition, component 1, unescaped
    for obx in msg.all("OBX"): obx.first(5).c(1)
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass, field

from gateway.errors import ParseError

__all__ = [
    "Composite",
    "Encoding",
    "Message",
    "Segment",
    "decode",
    "escape",
    "parse",
    "split_messages",
    "unescape",
]

BOM = b"\xef\xbb\xbf"
HEADER_SEGMENTS = frozenset({"MSH", "FHS", "BHS"})
BATCH_SEGMENTS = frozenset({"FHS", "BHS", "BTS", "FTS"})
_SEGMENT_ID = re.compile(r"^[A-Z][A-Z0-9]{2}$")
_LINE_BREAKS = re.compile(r"\r\n|\n|\r")

# MSH-18 values (HL7 table 0211) → Python codecs.
CHARSETS: dict[str, str] = {
    "ASCII": "ascii",
    "8859/1": "latin-1",
    "8859/2": "iso8859-2",
    "8859/3": "iso8859-3",
    "8859/4": "iso8859-4",
    "8859/5": "iso8859-5",
    "8859/6": "iso8859-6",
    "8859/7": "iso8859-7",
    "8859/8": "iso8859-8",
    "8859/9": "iso8859-9",
    "8859/15": "iso8859-15",
    "UNICODE": "utf-8",
    "UNICODE UTF-8": "utf-8",
    "UTF-8": "utf-8",
    "UNICODE UTF-16": "utf-16",
    "UNICODE UTF-32": "utf-32",
}


@dataclass(frozen=True, slots=True)
class Encoding:
    """The delimiters declared by MSH-1 and MSH-2."""

    field: str = "|"
    component: str = "^"
    repetition: str = "~"
    escape: str = "\\"
    subcomponent: str = "&"
    truncation: str | None = None

    @classmethod
    def from_msh2(cls, field_sep: str, chars: str) -> Encoding:
        # Tolerate doubled characters such as "^~\\&" by keeping the first of each.
        unique: list[str] = []
        for ch in chars:
            if ch not in unique and ch != field_sep:
                unique.append(ch)
        defaults = ["^", "~", "\\", "&"]
        while len(unique) < 4:
            unique.append(next(d for d in defaults if d not in unique))
        return cls(field_sep, unique[0], unique[1], unique[2], unique[3],
                   unique[4] if len(unique) > 4 else None)

    @property
    def msh2(self) -> str:
        return (self.component + self.repetition + self.escape + self.subcomponent
                + (self.truncation or ""))


DEFAULT_ENCODING = Encoding()


def unescape(value: str, enc: Encoding = DEFAULT_ENCODING) -> str:
    """Decode HL7 escape sequences (\\F\\ \\S\\ \\T\\ \\R\\ \\E\\ \\P\\ \\Xhh\\ \\.br\\ …)."""
    esc = enc.escape
    if esc not in value:
        return value
    out: list[str] = []
    i, n = 0, len(value)
    while i < n:
        ch = value[i]
        if ch != esc:
            out.append(ch)
            i += 1
            continue
        end = value.find(esc, i + 1)
        if end < 0:  # a lone escape character: keep it literally
            out.append(value[i:])
            break
        out.append(_escape_meaning(value[i + 1:end], enc))
        i = end + 1
    return "".join(out)


def _escape_meaning(code: str, enc: Encoding) -> str:
    simple = {"F": enc.field, "S": enc.component, "T": enc.subcomponent,
              "R": enc.repetition, "E": enc.escape, "P": enc.truncation or "#"}
    if code in simple:
        return simple[code]
    if code[:1] == "X" and len(code) > 1:
        try:
            raw = bytes.fromhex(code[1:])
        except ValueError:
            return ""
        try:
            return raw.decode("utf-8")
        except UnicodeDecodeError:
            return raw.decode("latin-1")
    if code in (".br", ".sp", ".sp1"):
        return "\n"
    # \H\ \N\ (highlighting), \C..\ \M..\ (charset switches), \Z..\, formatting: dropped.
    return ""


def escape(value: str, enc: Encoding = DEFAULT_ENCODING) -> str:
    """Encode delimiters in ``value`` so that it can be placed in one component."""
    e = enc.escape
    out = value.replace(e, f"{e}E{e}")
    out = out.replace(enc.field, f"{e}F{e}").replace(enc.component, f"{e}S{e}")
    out = out.replace(enc.subcomponent, f"{e}T{e}").replace(enc.repetition, f"{e}R{e}")
    if enc.truncation:
        out = out.replace(enc.truncation, f"{e}P{e}")
    return out.replace("\r", f"{e}X0D{e}").replace("\n", f"{e}X0A{e}")


class Composite:
    """One repetition of a field: components (1-based) and their sub-components."""

    __slots__ = ("enc", "parts", "raw")

    def __init__(self, raw: str, enc: Encoding) -> None:
        self.raw = raw
        self.enc = enc
        self.parts = raw.split(enc.component) if raw else []

    def c(self, i: int, sub: int = 1) -> str:
        """Component ``i`` (sub-component ``sub``), unescaped; "" when absent."""
        if i > len(self.parts) or i < 1:
            return ""
        part = self.parts[i - 1]
        if self.enc.subcomponent in part:
            subs = part.split(self.enc.subcomponent)
            part = subs[sub - 1] if sub <= len(subs) else ""
        elif sub > 1:
            return ""
        return unescape(part, self.enc) if self.enc.escape in part else part

    def subs(self, i: int) -> list[str]:
        """All sub-components of component ``i``, unescaped."""
        if i > len(self.parts) or i < 1 or not self.parts[i - 1]:
            return []
        return [unescape(s, self.enc) for s in self.parts[i - 1].split(self.enc.subcomponent)]

    @property
    def text(self) -> str:
        """The whole repetition as text (component 1 when there is only one)."""
        return unescape(self.raw, self.enc)

    def __bool__(self) -> bool:
        return bool(self.raw) and any(self.parts)

    def __len__(self) -> int:
        return len(self.parts)

    def __repr__(self) -> str:
        return f"Composite({self.raw!r})"


@dataclass(slots=True)
class Segment:
    """A segment; ``fields[n]`` is field n as raw text (fields[0] is the segment id)."""

    name: str
    fields: list[str]
    enc: Encoding
    index: int = 0  # position in the message, 0-based
    line: int = 0  # 1-based line in the source text
    occurrence: int = 0  # 1-based among the message's segments of this name (0: unknown)

    def raw(self, n: int) -> str:
        return self.fields[n] if 0 <= n < len(self.fields) else ""

    def reps(self, n: int) -> list[Composite]:
        """Non-empty repetitions of field ``n``."""
        raw = self.raw(n)
        if not raw:
            return []
        if self.name in HEADER_SEGMENTS and n in (1, 2):
            return [Composite(raw, Encoding(raw, "\x00", "\x01", "\x02", "\x03"))]
        return [Composite(r, self.enc) for r in raw.split(self.enc.repetition) if r]

    def first(self, n: int) -> Composite:
        """The first repetition of field ``n`` (an empty Composite when absent)."""
        raw = self.raw(n)
        if self.name in HEADER_SEGMENTS and n in (1, 2):
            return Composite(raw, Encoding(raw, "\x00", "\x01", "\x02", "\x03"))
        rep = raw.split(self.enc.repetition, 1)[0] if raw else ""
        return Composite(rep, self.enc)

    def get(self, n: int, comp: int = 1, sub: int = 1) -> str:
        """Field ``n``, first repetition, component ``comp``, unescaped."""
        return self.first(n).c(comp, sub)

    def has(self, n: int) -> bool:
        raw = self.raw(n)
        return bool(raw) and raw != '""'

    def __len__(self) -> int:
        return len(self.fields) - 1

    def __repr__(self) -> str:
        return f"Segment({self.name}, {len(self)} fields, line {self.line})"


@dataclass(slots=True)
class Message:
    """A parsed message: its segments in order, the delimiters, and header shortcuts."""

    segments: list[Segment]
    enc: Encoding
    charset: str = "utf-8"
    warnings: list[str] = field(default_factory=list)

    @property
    def msh(self) -> Segment:
        return self.segments[0]

    def all(self, name: str) -> list[Segment]:
        return [s for s in self.segments if s.name == name]

    def segment(self, name: str) -> Segment | None:
        for s in self.segments:
            if s.name == name:
                return s
        return None

    def __iter__(self) -> Iterator[Segment]:
        return iter(self.segments)

    def get(self, path: str) -> str:
        """Value at a path like ``PID-3``, ``PID-3.1``, ``MSH-9.2`` or ``OBX-5.1.2``."""
        name, _, rest = path.partition("-")
        seg = self.segment(name)
        if seg is None or not rest:
            return ""
        nums = [int(p) for p in rest.split(".")]
        return seg.get(nums[0], *(nums[1:3] or [1]))

    # --- MSH shortcuts -------------------------------------------------------------------
    @property
    def sending_application(self) -> str:
        return self.msh.get(3)

    @property
    def sending_facility(self) -> str:
        return self.msh.get(4)

    @property
    def control_id(self) -> str:
        return self.msh.get(10)

    @property
    def message_code(self) -> str:
        return self.msh.get(9, 1)

    @property
    def trigger_event(self) -> str:
        return self.msh.get(9, 2)

    @property
    def structure(self) -> str:
        return self.msh.get(9, 3)

    @property
    def message_type(self) -> str:
        """``ORU^R01`` style; just the code when there is no trigger."""
        trig = self.trigger_event
        return f"{self.message_code}^{trig}" if trig else self.message_code

    @property
    def version(self) -> str:
        return self.msh.get(12)

    @property
    def processing_id(self) -> str:
        return self.msh.get(11)

    @property
    def accept_ack_type(self) -> str:
        return self.msh.get(15).upper()

    @property
    def application_ack_type(self) -> str:
        return self.msh.get(16).upper()


def _charset_of(data: bytes) -> str | None:
    """MSH-18 read from the raw bytes (before decoding), or None."""
    start = data.find(b"MSH")
    if start < 0 or start + 4 > len(data):
        return None
    sep = data[start + 3:start + 4]
    end = len(data)
    for brk in (b"\r", b"\n"):
        pos = data.find(brk, start)
        if 0 <= pos < end:
            end = pos
    parts = data[start:end].split(sep)
    if len(parts) < 18:
        return None
    value = parts[17].split(b"~")[0].strip().decode("ascii", "replace").upper()
    return value or None


def decode(data: bytes) -> tuple[str, str, list[str]]:
    """Bytes → (text, codec used, warnings). Charset from MSH-18, else UTF-8, else Latin-1."""
    warnings: list[str] = []
    if data.startswith(BOM):
        data = data[len(BOM):]
    declared = _charset_of(data)
    codec = CHARSETS.get(declared or "", "utf-8")
    if declared and declared not in CHARSETS:
        warnings.append("MSH-18: unknown character set, read as UTF-8")
    try:
        return data.decode(codec), codec, warnings
    except UnicodeDecodeError:
        pass
    for fallback in ("utf-8", "latin-1"):
        if fallback == codec:
            continue
        try:
            text = data.decode(fallback)
        except UnicodeDecodeError:
            continue
        warnings.append(f"MSH-18: bytes are not {codec}, read as {fallback}")
        return text, fallback, warnings
    raise ParseError("message bytes cannot be decoded", segment="MSH", field=18)  # unreachable


def _lines(text: str) -> list[tuple[int, str]]:
    return [(i + 1, ln) for i, ln in enumerate(_LINE_BREAKS.split(text)) if ln.strip()]


def parse(data: bytes | str) -> Message:
    """Parse one message. Raises ParseError (with segment and field) when there is no usable MSH."""
    if isinstance(data, bytes | bytearray):
        text, codec, warnings = decode(bytes(data))
    else:
        text, codec, warnings = data.lstrip("\ufeff"), "utf-8", []
    lines = _lines(text)
    if not lines:
        raise ParseError("empty message", segment="MSH", field=None, code="100")
    first_no, first = lines[0]
    first = first.lstrip()
    if not first.startswith("MSH"):
        raise ParseError("message does not start with an MSH segment", segment="MSH",
                         field=None, code="100")
    if len(first) < 8:
        raise ParseError("MSH segment too short to carry its encoding characters",
                         segment="MSH", field=2, code="100")
    field_sep = first[3]
    if field_sep.isalnum() or field_sep.isspace():
        raise ParseError("MSH-1 field separator is invalid", segment="MSH", field=1, code="102")
    chars = first[4:].split(field_sep, 1)[0]
    if not chars:
        raise ParseError("MSH-2 encoding characters are missing", segment="MSH", field=2,
                         code="101")
    if any(c.isalnum() or c.isspace() for c in chars[:5]):
        # an ACK in these delimiters would be unreadable (MSA|AR| split at "A")
        raise ParseError("MSH-2 encoding characters must not be letters, digits or spaces",
                         segment="MSH", field=2, code="102")
    enc = Encoding.from_msh2(field_sep, chars)
    segments: list[Segment] = []
    seen: dict[str, int] = {}
    lines[0] = (first_no, first)
    for line_no, line in lines:
        name = line[:3]
        if not _SEGMENT_ID.match(name) or (len(line) > 3 and line[3] != field_sep):
            warnings.append(f"line {line_no}: not a segment, skipped")
            continue
        if name in HEADER_SEGMENTS:
            parts = line.split(field_sep)
            fields = [name, field_sep, *parts[1:]]
        else:
            fields = line.split(field_sep)
        seen[name] = seen.get(name, 0) + 1
        segments.append(Segment(name, fields, enc, len(segments), line_no, seen[name]))
    return Message(segments, enc, codec, warnings)


def split_messages(data: bytes | str) -> list[str]:
    """Split a file or batch (FHS/BHS…BTS/FTS, or MSH after MSH) into message texts.

    Works on text so that the caller decides the charset; bytes are decoded per message
    by ``decode`` afterwards when needed. Lines are re-joined with CR.
    """
    text = decode(data)[0] if isinstance(data, bytes | bytearray) else data.lstrip("\ufeff")
    messages: list[list[str]] = []
    for _, line in _lines(text):
        head = line.lstrip()[:3]
        if head in BATCH_SEGMENTS:
            continue
        if head == "MSH":
            messages.append([line.lstrip()])
        elif messages:
            messages[-1].append(line)
    return ["\r".join(m) + "\r" for m in messages]
