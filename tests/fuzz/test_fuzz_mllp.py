"""Mutated corpus messages over a real MLLP socket to a real gateway (SQLite): every frame
gets an acknowledgment with an MSA, the connection survives all of them, and a normal
message at the end is still acknowledged AA. Seeds are fixed (a hypothesis run per socket
would cost seconds each); ``tests/fuzz/test_fuzz_ingest.py`` explores the same mutations
widely without sockets."""

from __future__ import annotations

import random
from pathlib import Path

from gateway.hl7.mllp import MllpClient
from gateway.hl7.parser import parse
from tests.fuzz.mutations import corpus_messages, mutate
from tests.test_ingest import oru
from tests.test_runtime import start_gateway

SEEDS = range(40)


def framed_safe(text: str) -> bytes:
    """A mutated message as a sender could frame it: no <VT>/<FS> inside."""
    return text.replace("\x0b", "").replace("\x1c", "").encode("utf-8", "surrogatepass")


async def test_every_mutated_message_over_mllp_gets_an_ack_and_the_line_stays_up(
        tmp_path: Path, sqlite_url: str) -> None:
    messages = corpus_messages()
    gw = await start_gateway(tmp_path, sqlite_url)
    try:
        assert gw.mllp is not None
        async with await MllpClient.connect("127.0.0.1", gw.mllp.port, timeout=30) as client:
            for seed in SEEDS:
                rng = random.Random(seed)
                text = mutate(messages[rng.randrange(len(messages))], rng, rng.randint(1, 5))
                answers = await client.send(framed_safe(text))
                assert answers, f"seed {seed}: no answer"
                for answer in answers:
                    assert any(s.name == "MSA" for s in parse(answer).segments), seed
            [last] = await client.send(oru("AFTER-FUZZ"))
        assert gw.mllp.stats.errors == 0
    finally:
        await gw.stop()
    assert b"MSA|AA|AFTER-FUZZ" in last
