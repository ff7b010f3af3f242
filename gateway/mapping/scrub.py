"""The free-text scrubber: clinical text kept, the identity of the message's people removed.

    scrubber = Scrubber(identity)            # identity: gateway.mapping.identity.Identity
    scrubber.scrub("Paziente Rossi Nicolò, tel. 335 123 4567")
    # → "Paziente [NAME] [NAME], tel. [PHONE]";  scrubber.counts → {"NAME": 2, "PHONE": 1}

Matching happens on a normalised copy of the text (NFKD, combining marks stripped,
casefolded: "NICOLO'", "Nicolò" and "nicolo" are one word), on word boundaries, and each hit
is mapped back to its span in the original text, which keeps everything else as written.

What is removed, each replaced by a marker (``MARKERS``):

- the message's own people (``Identity``: name parts, identifiers, phones, e-mail
  addresses, street and postal code, dates of birth in any written form);
- patterns of identity whoever they belong to: codice fiscale (with omocodia letters),
  tessera sanitaria (TEAM card, 20 digits from 80380), phone numbers (Italian mobile and
  landline, +39 / 0039, international), e-mail addresses, a date after "nato il", "born",
  "DOB", "data di nascita", numbers after an MRN keyword or one of the site's assigning
  authorities ("MRN 12345", "nosologico 2026/123", "POLIMI 778899"), and numbers of the same
  shape as the message's own MRNs.

Linear time: one compiled alternation (bounded quantifiers, every open-ended run anchored
on a boundary) scanned once over the text, whatever the number of names; the compiled
pattern is cached per identity, and results per text (code texts repeat across OBX).
"""

from __future__ import annotations

import re
import unicodedata
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from functools import lru_cache

MARKERS = {"NAME": "[NAME]", "ID": "[ID]", "PHONE": "[PHONE]", "EMAIL": "[EMAIL]",
           "DATE": "[DATE]", "ADDRESS": "[ADDRESS]"}
# Particles of surnames ("De Luca", "van der Berg"): matched inside the full name, never
# alone (they are ordinary words).
PARTICLES = frozenset({"de", "di", "da", "del", "della", "dei", "degli", "dal", "dalla", "le",
                       "la", "lo", "li", "van", "von", "der", "den", "du", "des", "el", "al",
                       "st", "san", "mc", "mac", "d", "y", "e", "jr", "sr", "ii", "iii"})
MIN_ID = 4  # identifiers shorter than this are not identifying alone (and are ordinary text)
MONTHS = (
    ("gennaio", "january", "gen", "jan"), ("febbraio", "february", "feb"),
    ("marzo", "march", "mar"), ("aprile", "april", "apr"), ("maggio", "may", "mag"),
    ("giugno", "june", "giu", "jun"), ("luglio", "july", "lug", "jul"),
    ("agosto", "august", "ago", "aug"), ("settembre", "september", "set", "sep", "sept"),
    ("ottobre", "october", "ott", "oct"), ("novembre", "november", "nov"),
    ("dicembre", "december", "dic", "dec"),
)
_ALL_MONTHS = "|".join(sorted({n for names in MONTHS for n in names}, key=len, reverse=True))
_L, _R = r"(?<![^\W_])", r"(?![^\W_])"  # not preceded / followed by a letter or digit
_SEP = r"[ ./-]{1,2}"
_NUM_DATE = r"\d{1,4}[ ./-]\d{1,2}[ ./-]\d{2,4}"
_TEXT_DATE = rf"\d{{1,2}}[°o]?\s{{0,2}}(?:{_ALL_MONTHS})\.?\s{{0,2}}\d{{2,4}}"
# Patterns of identity (on the normalised text: lower case, no accents).
PATTERNS: tuple[tuple[str, str], ...] = (
    ("EMAIL", r"(?<![\w.%+-])[\w.%+-]{1,64}@[\w-]{1,63}(?:\.[\w-]{1,63}){0,8}\.[a-z]{2,24}"),
    ("ID", rf"{_L}[a-z]{{6}}[0-9lmnpqrstuv]{{2}}[abcdehlmprst][0-9lmnpqrstuv]{{2}}[a-z]"
           rf"[0-9lmnpqrstuv]{{3}}[a-z]{_R}"),  # codice fiscale, omocodia letters included
    ("ID", r"(?<!\d)80380(?:[ -]?\d){15}(?!\d)"),  # tessera sanitaria (TEAM card number)
    ("BORN", rf"{_L}(?:nat[oa](?:\s{{1,3}}il)?|born(?:\s{{1,3}}on)?|d\.?o\.?b\.?|date\s{{1,3}}"
             rf"of\s{{1,3}}birth|data\s{{1,3}}(?:di\s{{1,3}})?nascita|dn)\s{{0,3}}:?\s{{0,3}}"
             rf"(?P<born>{_NUM_DATE}|{_TEXT_DATE}){_R}"),
)
PHONES: tuple[tuple[str, str], ...] = (
    ("PHONE", r"(?<![\w.,+])(?:(?:\+|00)39[ ./-]{0,2})?3\d{2}[ ./-]{0,2}\d{3}[ ./-]{0,2}\d{3,4}"
              r"(?![\w]|[.,]\d)"),  # Italian mobile
    ("PHONE", r"(?<![\w.,+])(?:(?:\+|00)39[ ./-]{0,2})?0\d{1,3}(?:[ ./-]{0,2}\d{3,8}){1,3}"
              r"(?![\w]|[.,]\d)"),  # Italian landline: area code then groups of 3+ digits
    ("PHONE", r"(?<![\w.,+])(?:\+|00)[1-9]\d{0,2}(?:[ ./-]{0,2}\d){6,13}(?![\w]|[.,]\d)"),
)
MIN_PHONE_DIGITS = 8
_WORD = re.compile(r"[^\W_]+")


def normalise(text: str) -> tuple[str, list[int] | None]:
    """(NFKD, no combining marks, casefolded text; for each of its characters the index of
    the original character it came from, plus the end), None as map when 1:1 (ASCII)."""
    if text.isascii():
        return text.lower(), None
    out: list[str] = []
    where: list[int] = []
    for i, ch in enumerate(text):
        if ch.isascii():
            out.append(ch.lower())
            where.append(i)
            continue
        folded = "".join(c for c in unicodedata.normalize("NFKD", ch)
                         if not unicodedata.combining(c)).casefold()
        out.append(folded)
        where.extend([i] * len(folded))
    where.append(len(text))
    return "".join(out), where


def fold(text: str) -> str:
    return normalise(text)[0]


@dataclass(frozen=True, slots=True)
class Identity:
    """What identifies the people of one message (values, never logged or reported)."""

    names: frozenset[str] = frozenset()  # name parts (family, given, middle), as sent
    ids: frozenset[str] = frozenset()  # identifier values (CX-1, SSN, licence, visit…)
    phones: frozenset[str] = frozenset()  # digits only
    emails: frozenset[str] = frozenset()
    addresses: frozenset[str] = frozenset()  # street lines, postal codes
    births: frozenset[tuple[int, int, int]] = frozenset()  # (year, month, day)
    id_shapes: frozenset[str] = frozenset()  # regexes of the shape of the message's MRNs
    authorities: frozenset[str] = frozenset()  # site's assigning authorities, facilities


def _phrase(text: str) -> str | None:
    """A name or address as a regex on the normalised text: its words in order, any
    punctuation or none between them ("D'Angelo", "D Angelo", "Dangelo")."""
    words = _WORD.findall(fold(text))
    return r"[\W_]{0,3}".join(re.escape(w) for w in words) if words else None


def name_terms(names: Iterable[str]) -> set[str]:
    """Each name part as a whole, and each of its words that is not a particle."""
    out: set[str] = set()
    for name in names:
        words = _WORD.findall(fold(name))
        if len("".join(words)) >= 2:
            out.add(r"[\W_]{0,3}".join(re.escape(w) for w in words))
        out.update(re.escape(w) for w in words if len(w) >= 2 and w not in PARTICLES)
    return out


def date_terms(births: Iterable[tuple[int, int, int]]) -> set[str]:
    """A date of birth in the ways people write it: 12/03/1961, 12-3-61, 1961-03-12,
    19610312, 12 marzo 1961, 12 mar. 61, March 12, 1961."""
    out: set[str] = set()
    for year, month, day in births:
        d, m = f"0?{day}" if day < 10 else str(day), f"0?{month}" if month < 10 else str(month)
        y = rf"(?:{year}|{year % 100:02d})"
        names = "|".join(MONTHS[month - 1]) if 1 <= month <= 12 else "(?!)"
        out |= {rf"{d}{_SEP}{m}{_SEP}{y}", rf"{year}{_SEP}{m}{_SEP}{d}",
                rf"{m}{_SEP}{d}{_SEP}{y}", f"{year}{month:02d}{day:02d}",
                f"{day:02d}{month:02d}(?:{year}|{year % 100:02d})",
                rf"{d}[°o]?\s{{0,2}}(?:{names})\.?,?\s{{0,2}}{y}",
                rf"(?:{names})\.?\s{{0,2}}{d},?\s{{0,2}}{y}"}
    return out


def phone_terms(phones: Iterable[str]) -> set[str]:
    """A known number with any separators between its digits, with or without +39/0039."""
    out: set[str] = set()
    for digits in phones:
        local = digits.removeprefix("0039") if digits.startswith("0039") else digits
        local = local.removeprefix("39") if len(local) > 10 and local.startswith("39") else local
        if len(local) >= 6:
            body = r"[ ./()-]{0,2}".join(local)
            out.add(rf"(?:(?:\+|00)\d{{1,3}}[ ./-]{{0,2}})?{body}")
    return out


def _alternatives(identity: Identity) -> list[tuple[str, str]]:
    ids = {re.escape(fold(i)) for i in identity.ids if len(i) >= MIN_ID}
    emails = {re.escape(fold(e)) for e in identity.emails if "@" in e}
    addresses = {p for a in identity.addresses if len(a) >= 3 and (p := _phrase(a))}
    keywords = {re.escape(fold(a)) for a in identity.authorities if len(a) >= 2}
    keywords |= {"mrn", r"n\.?\s{0,2}nosologico", "nosologico", "cartella(?:\\s{1,3}clinica)?",
                 r"id\s{1,3}paziente", r"patient\s{1,3}id", r"codice\s{1,3}paziente",
                 r"pat\.?\s{0,2}id", "medical\\s{1,3}record(?:\\s{1,3}number)?"}
    # A marker is left as it is (scrubbing is idempotent, even for a patient named "Name").
    out = [("KEEP", r"\[(?:" + "|".join(k.lower() for k in MARKERS) + r")\]")]
    out += [("EMAIL", t) for t in _longest_first(emails)]
    out += PATTERNS
    out += [("DATE", rf"(?:{t})(?!\d)") for t in _longest_first(date_terms(identity.births))]
    out += [("PHONE", rf"(?:{t})(?!\d)") for t in _longest_first(phone_terms(identity.phones))]
    out += [("ID", rf"{_L}{t}{_R}") for t in _longest_first(ids)]
    out.append(("MRN", rf"{_L}(?:{'|'.join(_longest_first(keywords))})\s{{0,3}}[:#n°.]{{0,3}}"
                       r"\s{0,3}(?P<mrn>(?=[a-z/-]{0,30}\d)[a-z0-9][a-z0-9/-]{2,30})" + _R))
    out += [("ID", rf"{_L}{t}{_R}") for t in sorted(identity.id_shapes)]
    out += [("NAME", rf"{_L}{t}{_R}") for t in _longest_first(name_terms(identity.names))]
    out += [("ADDRESS", rf"{_L}{t}{_R}") for t in _longest_first(addresses)]
    return out + list(PHONES)


def _longest_first(terms: Iterable[str]) -> list[str]:
    return sorted(terms, key=lambda t: (-len(t), t))


@lru_cache(maxsize=256)
def compiled(identity: Identity) -> re.Pattern[str]:
    """One alternation for everything; group ``K<n>_<KIND>`` tells which kind matched."""
    parts = [f"(?P<K{n}_{kind}>{text})" for n, (kind, text) in enumerate(_alternatives(identity))]
    # Every alternative starts on a word boundary: checked once here, so that inside a word
    # the scan moves on after one test instead of trying every alternative.
    return re.compile(rf"{_L}(?:{'|'.join(parts)})")


@dataclass(slots=True)
class Scrubber:
    """Scrubs texts for one message (one identity); ``counts`` per marker kind."""

    identity: Identity = field(default_factory=Identity)
    counts: Counter[str] = field(default_factory=Counter)
    texts: int = 0  # texts changed
    _pattern: re.Pattern[str] | None = None
    _done: dict[str, tuple[str, Counter[str]]] = field(default_factory=dict)

    def scrub(self, text: str) -> str:
        if not text:
            return text
        hit = self._done.get(text)
        if hit is None:
            hit = self._done[text] = self._scrub(text)
        if hit[1]:
            self.texts += 1
            self.counts.update(hit[1])
        return hit[0]

    def _scrub(self, text: str) -> tuple[str, Counter[str]]:
        if self._pattern is None:
            self._pattern = compiled(self.identity)
        norm, where = normalise(text)
        pieces: list[str] = []
        counts: Counter[str] = Counter()
        last = 0
        for match in self._pattern.finditer(norm):
            kind, start = self._kind(match)
            if kind is None:
                continue
            lo, hi = _span(where, start, match.end())
            pieces += [text[last:lo], MARKERS[kind]]
            last = hi
            counts[kind] += 1
        if not pieces:
            return text, counts
        pieces.append(text[last:])
        return "".join(pieces), counts

    def _kind(self, match: re.Match[str]) -> tuple[str | None, int]:
        """(marker kind, start of the part to replace); None: not identifying after all."""
        kind = (match.lastgroup or "_").split("_", 1)[1]
        if kind == "BORN":
            return "DATE", match.start("born")
        if kind == "MRN":
            return "ID", match.start("mrn")
        if kind == "KEEP":
            return None, 0
        if kind == "PHONE" and sum(c.isdigit() for c in match.group()) < MIN_PHONE_DIGITS:
            return None, 0
        return kind, match.start()


def _span(where: list[int] | None, start: int, end: int) -> tuple[int, int]:
    if where is None:
        return start, end
    return where[start], where[end - 1] + 1 if end > start else where[start]


# Where a sender's text lands in the resources the mapping builds: CodeableConcept.text,
# Coding.display, Annotation.text (note), valueString, referenceRange.text.
TEXT_KEYS = frozenset({"text", "display", "valueString"})
# Built from the site's configuration and the gateway's own words, not from sender text.
OWN_TYPES = frozenset({"Organization", "Provenance"})


def scrub_resources(resources: Iterable[dict[str, object]], scrubber: Scrubber) -> None:
    """Scrub, in place, every text slot of ``resources`` (but those of ``OWN_TYPES``)."""
    for resource in resources:
        if resource.get("resourceType") not in OWN_TYPES:
            _walk(resource, scrubber)


def _walk(node: object, scrubber: Scrubber) -> None:
    if isinstance(node, dict):
        for key, value in node.items():
            if key in TEXT_KEYS and isinstance(value, str):
                node[key] = scrubber.scrub(value)
            elif isinstance(value, dict | list):
                _walk(value, scrubber)
    elif isinstance(node, list):
        for item in node:
            if isinstance(item, dict | list):
                _walk(item, scrubber)


def summary(scrubber: Scrubber) -> str | None:
    """The conversion report's line: counts per kind, never a value."""
    if not scrubber.counts:
        return None
    kinds = ", ".join(f"{kind} {n}" for kind, n in sorted(scrubber.counts.items()))
    return (f"identity removed from sender text before it left the edge: {kinds} "
            f"({scrubber.texts} text{'s' if scrubber.texts != 1 else ''})")
