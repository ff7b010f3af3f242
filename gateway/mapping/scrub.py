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

Linear time: one compiled alternation (bounded quantifiers, every alternative anchored on
a word boundary) scanned once over the text. The people's names, identifiers and
addresses are prefix tries inside it (the cost at a position is the length of the longest
term, not their number); dates of birth and the people's phone numbers are set lookups
where a number starts. The pattern is cached per identity, results per text (code texts
repeat across 20,000 OBX).
"""

from __future__ import annotations

import re
import unicodedata
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

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
# A written date: 12/03/1961, 1961-03-12, 19610312, 120361, 12 marzo 1961, March 12, 1961
_DATE_NUM = r"\d{1,4}[ ./-]{1,2}\d{1,2}[ ./-]{1,2}\d{2,4}|\d{8}|\d{6}"
_DATE_TEXT = (rf"\d{{1,2}}[°o]?\s{{0,2}}(?:{_ALL_MONTHS})\.?,?\s{{0,2}}\d{{2,4}}"
              rf"|(?:{_ALL_MONTHS})\.?\s{{0,2}}\d{{1,2}},?\s{{0,2}}\d{{2,4}}")
# Patterns of identity (on the normalised text: lower case, no accents).
PATTERNS: tuple[tuple[str, str], ...] = (
    ("EMAIL", r"(?<![\w.%+-])[\w.%+-]{1,64}@[\w-]{1,63}(?:\.[\w-]{1,63}){0,8}\.[a-z]{2,24}"),
    ("ID", rf"{_L}[a-z]{{6}}[0-9lmnpqrstuv]{{2}}[abcdehlmprst][0-9lmnpqrstuv]{{2}}[a-z]"
           rf"[0-9lmnpqrstuv]{{3}}[a-z]{_R}"),  # codice fiscale, omocodia letters included
    ("ID", r"(?<!\d)80380(?:[ -]?\d){15}(?!\d)"),  # tessera sanitaria (TEAM card number)
    ("BORN", rf"{_L}(?:nat[oa](?:\s{{1,3}}il)?|born(?:\s{{1,3}}on)?|d\.?o\.?b\.?|date\s{{1,3}}"
             rf"of\s{{1,3}}birth|data\s{{1,3}}(?:di\s{{1,3}})?nascita|dn)\s{{0,3}}:?\s{{0,3}}"
             rf"(?P<born>{_DATE_NUM}|{_DATE_TEXT}){_R}"),
)
PHONES: tuple[tuple[str, str], ...] = (
    ("PHONE", r"(?<![\w.,+])(?:(?:\+|00)39[ ./-]{0,2})?3\d{2}[ ./-]{0,2}\d{3}[ ./-]{0,2}\d{3,4}"
              r"(?![\w]|[.,]\d)"),  # Italian mobile
    ("PHONE", r"(?<![\w.,+])(?:(?:\+|00)39[ ./-]{0,2})?(?=\d(?:[ ./-]{0,2}\d){7})"
              r"0\d{1,3}(?:[ ./-]{0,2}\d{3,8}){1,3}(?![\w]|[.,]\d)"),
    # Italian landline: 8 digits or more, area code then groups of 3+ digits
    ("PHONE", r"(?<![\w.,+])(?:\+|00)[1-9]\d{0,2}(?:[ ./-]{0,2}\d){6,13}(?![\w]|[.,]\d)"),
)
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


Atoms = tuple[str, ...]  # a term as regex atoms: escaped characters and separators
_GAP = r"[\W_]{0,3}"  # between the words of a name or address: any punctuation, or none
_DIGIT_GAP = r"[ ./()-]{0,2}"  # between the digits of a phone number


def _words(text: str) -> list[str]:
    return _WORD.findall(fold(text))


def _spelled(words: Iterable[str], gap: str) -> Atoms:
    """Words as atoms: each character, ``gap`` between words ("D'Angelo", "D Angelo" and
    "Dangelo" are one term)."""
    atoms: list[str] = []
    for word in words:
        if atoms:
            atoms.append(gap)
        atoms += [re.escape(c) for c in word]
    return tuple(atoms)


def name_terms(names: Iterable[str]) -> set[Atoms]:
    """Each name part as a whole, and each of its words that is not a particle."""
    out: set[Atoms] = set()
    for name in names:
        words = _words(name)
        if len("".join(words)) >= 2:
            out.add(_spelled(words, _GAP))
        out.update(_spelled([w], _GAP) for w in words if len(w) >= 2 and w not in PARTICLES)
    return out


def local_number(digits: str) -> str:
    """A phone number's national part: without a leading 0039 or +39 (kept as digits)."""
    if digits.startswith("0039"):
        return digits[4:]
    return digits[2:] if len(digits) > 10 and digits.startswith("39") else digits


def trie(terms: Iterable[Atoms]) -> str:
    """One regex for many terms, prefixes shared: the cost at a position of the text is the
    length of the longest term, not the number of terms (a message with thousands of NK1
    names stays linear). Longer terms are tried before their prefixes."""
    root: dict[str, Any] = {}
    for atoms in terms:
        node = root
        for atom in atoms:
            node = node.setdefault(atom, {})
        node[""] = {}
    return _emit(root) if root else "(?!)"


def _emit(node: dict[str, Any]) -> str:
    branches = []
    for atom in sorted(a for a in node if a):
        child, text = node[atom], atom
        while len(child) == 1 and "" not in child:  # a chain: one literal run, no group
            (next_atom, child), = child.items()
            text += next_atom
        branches.append(text + (_emit(child) if child != {"": {}} else ""))
    if not branches:
        return ""
    body = branches[0] if len(branches) == 1 else "(?:" + "|".join(branches) + ")"
    return f"(?:{body})?" if "" in node else body


def _alternatives(identity: Identity) -> list[tuple[str, str]]:
    ids = {tuple(re.escape(c) for c in fold(i)) for i in identity.ids if len(i) >= MIN_ID}
    ids |= {tuple(re.escape(c) for c in fold(e)) for e in identity.emails if "@" in e}
    addresses = {_spelled(w, _GAP) for a in identity.addresses if len(a) >= 3
                 if (w := _words(a))}
    keywords = {re.escape(fold(a)) for a in identity.authorities if len(a) >= 2}
    keywords |= {"mrn", r"n\.?\s{0,2}nosologico", "nosologico", "cartella(?:\\s{1,3}clinica)?",
                 r"id\s{1,3}paziente", r"patient\s{1,3}id", r"codice\s{1,3}paziente",
                 r"pat\.?\s{0,2}id", "medical\\s{1,3}record(?:\\s{1,3}number)?"}
    # A marker is left as it is (scrubbing is idempotent, even for a patient named "Name").
    out = [("KEEP", r"\[(?:" + "|".join(k.lower() for k in MARKERS) + r")\]")]
    out += PATTERNS
    if ids:
        out.append(("ID", rf"{trie(ids)}{_R}"))
    out.append(("MRN", rf"(?:{'|'.join(_longest_first(keywords))})\s{{0,3}}[:#n°.]{{0,3}}"
                       r"\s{0,3}(?P<mrn>(?=[a-z/-]{0,30}\d)[a-z0-9][a-z0-9/-]{2,30})" + _R))
    out += [("ID", rf"{t}{_R}") for t in sorted(identity.id_shapes)]
    names = name_terms(identity.names)
    if names:
        out.append(("NAME", rf"{trie(names)}{_R}"))
    if addresses:
        out.append(("ADDRESS", rf"{trie(addresses)}{_R}"))
    out += PHONES
    if identity.births or identity.phones:
        # Last, zero-width: where a number or a month name starts, ``Scrubber._candidate``
        # reads a date (kept unless it is a date of birth) or a run of digits (kept unless
        # it is one of the people's phone numbers): a set lookup, whatever their number.
        out.append(("CAND", rf"(?=[+\d]|(?:{_ALL_MONTHS})[\s.\d])"))
    return out


def _longest_first(terms: Iterable[str]) -> list[str]:
    return sorted(terms, key=lambda t: (-len(t), t))


@lru_cache(maxsize=256)
def compiled(identity: Identity) -> re.Pattern[str]:
    """One alternation for everything; group ``K<n>_<KIND>`` tells which kind matched."""
    parts = [f"(?P<K{n}_{kind}>{text})" for n, (kind, text) in enumerate(_alternatives(identity))]
    # Every alternative starts on a word boundary: checked once here, so that inside a word
    # the scan moves on after one test instead of trying every alternative.
    return re.compile(rf"{_L}(?:{'|'.join(parts)})")


_MONTH_NUMBER = {name: n for n, names in enumerate(MONTHS, 1) for name in names}
DATE_CANDIDATE = re.compile(rf"(?:{_DATE_NUM}|{_DATE_TEXT}){_R}")
PHONE_CANDIDATE = re.compile(r"(?:(?:\+|00)\d{1,3}[ ./-]{0,2})?\d(?:[ ./()-]{0,2}\d){5,14}")


def date_readings(text: str) -> set[tuple[int, int, int]]:
    """The (year, month, day) a written date can mean (day-first, month-first, year-first;
    two-digit years kept as such): "12/03/61" → {(61, 3, 12), (61, 12, 3)}."""
    numbers = re.findall(r"\d+", text)
    month = next((_MONTH_NUMBER[w] for w in re.findall(r"[a-z]+", text) if w in _MONTH_NUMBER),
                 None)
    if month is not None and len(numbers) == 2:
        day, year = (numbers if len(numbers[0]) <= 2 else numbers[::-1])
        return {(int(year), month, int(day))}
    if len(numbers) == 1 and len(numbers[0]) in (6, 8):
        n = numbers[0]
        if len(n) == 6:
            return {(int(n[4:]), int(n[2:4]), int(n[:2]))}
        return {(int(n[:4]), int(n[4:6]), int(n[6:])), (int(n[4:]), int(n[2:4]), int(n[:2]))}
    if len(numbers) == 3:
        a, b, c = numbers
        if len(a) == 4:
            return {(int(a), int(b), int(c))}
        return {(int(c), int(b), int(a)), (int(c), int(a), int(b))}
    return set()


def births_read(births: frozenset[tuple[int, int, int]]) -> frozenset[tuple[int, int, int]]:
    """The dates of birth, and each with a two-digit year (as ``date_readings`` gives)."""
    return births | {(y % 100, m, d) for y, m, d in births}


@dataclass(slots=True)
class Scrubber:
    """Scrubs texts for one message (one identity); ``counts`` per marker kind."""

    identity: Identity = field(default_factory=Identity)
    counts: Counter[str] = field(default_factory=Counter)
    texts: int = 0  # texts changed
    _pattern: re.Pattern[str] | None = None
    _births: frozenset[tuple[int, int, int]] | None = None
    _phones: frozenset[str] = frozenset()
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
        last = pos = 0
        search = self._pattern.search
        while (match := search(norm, pos)) is not None:
            kind, start, end = self._kind(match)
            if kind is None:  # not identifying after all: look again from the next position
                pos = match.start() + 1
                continue
            lo, hi = _span(where, start, end)
            pieces += [text[last:lo], MARKERS[kind]]
            last = hi
            pos = end
            counts[kind] += 1
        if not pieces:
            return text, counts
        pieces.append(text[last:])
        return "".join(pieces), counts

    def _kind(self, match: re.Match[str]) -> tuple[str | None, int, int]:
        """(marker kind, span to replace); None: not identifying after all."""
        kind = (match.lastgroup or "_").split("_", 1)[1]
        if kind == "BORN":
            return "DATE", match.start("born"), match.end()
        if kind == "MRN":
            return "ID", match.start("mrn"), match.end()
        if kind == "CAND":
            return self._candidate(match.string, match.start())
        if kind == "KEEP":
            return None, 0, 0
        return kind, match.start(), match.end()

    def _candidate(self, norm: str, start: int) -> tuple[str | None, int, int]:
        """A date of birth, or a phone number of the message's people, starting at
        ``start`` (the longest run of digits that is one)."""
        if self._births is None:
            self._births = births_read(self.identity.births)
            self._phones = frozenset(local_number(p) for p in self.identity.phones)
        date = DATE_CANDIDATE.match(norm, start)
        if date and not self._births.isdisjoint(date_readings(date.group())):
            return "DATE", start, date.end()
        run = PHONE_CANDIDATE.match(norm, start) if self._phones else None
        if run is None:
            return None, 0, 0
        digits, ends = "", []
        for i, char in enumerate(run.group(), start):
            if char.isdigit():
                digits += char
                ends.append(i + 1)
        for n in range(len(digits), 5, -1):
            if local_number(digits[:n]) in self._phones or digits[:n] in self._phones:
                if n == len(digits) or not norm[ends[n - 1]:ends[n - 1] + 1].isdigit():
                    return "PHONE", start, ends[n - 1]
        return None, 0, 0


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
