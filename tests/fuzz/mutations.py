"""Mutated HL7 v2 messages for the fuzz tests: real corpus messages (MSH-4 rewritten to a
configured site) changed the way broken senders and attackers change them: bytes deleted,
delimiters and escape sequences inserted, segments repeated thousands of times, fields
made huge, lines cut off."""

from __future__ import annotations

import random
from dataclasses import dataclass
from functools import cache

from hypothesis import strategies as st

from gateway.hl7.parser import split_messages
from tests.conftest import CORPUS

SITE_FACILITY = "HPG23"
NOISE = "|^~\\&\r\n#\x0b\x1c\x00é€ 0123456789.-+<>=E\"'"


@cache
def corpus_messages() -> tuple[str, ...]:
    """Every HL7 message of the shared corpus, addressed to a configured site."""
    out = []
    for path in sorted(CORPUS.rglob("*.hl7")):
        for text in split_messages(path.read_bytes()):
            if len(text) > 8:
                out.append(with_facility(text, SITE_FACILITY))
    return tuple(out)


def with_facility(text: str, facility: str) -> str:
    sep = text[3]
    first, _, rest = text.partition("\r")
    fields = first.split(sep)
    while len(fields) < 5:
        fields.append("")
    fields[3] = facility
    return sep.join(fields) + "\r" + rest


def mutate(text: str, rng: random.Random, rounds: int) -> str:
    for _ in range(rounds):
        text = MUTATIONS[rng.randrange(len(MUTATIONS))](text, rng)
    return text


def _delete(text: str, rng: random.Random) -> str:
    at = rng.randrange(len(text) + 1)
    return text[:at] + text[at + rng.randrange(1, 40):]


def _insert(text: str, rng: random.Random) -> str:
    at = rng.randrange(len(text) + 1)
    noise = "".join(rng.choice(NOISE) for _ in range(rng.randrange(1, 12)))
    return text[:at] + noise + text[at:]


def _repeat_segment(text: str, rng: random.Random) -> str:
    segments = text.split("\r")
    i = rng.randrange(len(segments))
    segments[i + 1:i + 1] = [segments[i]] * rng.choice((1, 2, 50, 500))
    return "\r".join(segments)


def _huge_field(text: str, rng: random.Random) -> str:
    segments = text.split("\r")
    i = rng.randrange(len(segments))
    fields = segments[i].split("|")
    j = rng.randrange(1, max(2, len(fields)))
    while len(fields) <= j:
        fields.append("")
    fields[j] = rng.choice("9A^~&\\") * rng.choice((300, 5_000, 70_000))
    segments[i] = "|".join(fields)
    return "\r".join(segments)


def _truncate(text: str, rng: random.Random) -> str:
    return text[:rng.randrange(len(text) + 1)]


def _swap_segments(text: str, rng: random.Random) -> str:
    segments = text.split("\r")
    i, j = rng.randrange(len(segments)), rng.randrange(len(segments))
    segments[i], segments[j] = segments[j], segments[i]
    return "\r".join(segments)


def _escape(text: str, rng: random.Random) -> str:
    at = rng.randrange(len(text) + 1)
    seq = rng.choice(("\\X0D\\", "\\E\\", "\\.br\\", "\\Xzz\\", "\\C2842\\", "\\M", "\\",
                      "\\H\\\\N\\", "\\Z\\", "\\X00\\"))
    return text[:at] + seq + text[at:]


MUTATIONS = (_delete, _insert, _repeat_segment, _huge_field, _truncate, _swap_segments,
             _escape)


@dataclass(frozen=True)
class Mutant:
    """Which corpus message, and the seed and number of its mutations: a short repr for a
    failure report (the message itself can be megabytes), replayed exactly by ``text``."""

    index: int
    seed: int
    rounds: int

    @property
    def text(self) -> str:
        messages = corpus_messages()
        return mutate(messages[self.index % len(messages)], random.Random(self.seed),
                      self.rounds)


def mutated_messages() -> st.SearchStrategy[Mutant]:
    """A corpus message with one to five mutations."""
    return st.builds(Mutant, st.integers(0, 10_000), st.integers(0, 2**32 - 1),
                     st.integers(1, 5))
