"""Fuzzing the whole ingest with mutated corpus messages: every message gets an ACK whose
MSA-1 says what happened, and none of them is "refused" (that answer is for a full queue or
a failing database: here it would mean a bug was swallowed as a store failure). The
drop-folder readers get generated and mutated CSV, TSV and XLSX files: an import report
every time, never an exception."""

from __future__ import annotations

import io
import random
import zipfile
from collections.abc import Iterator
from functools import cache

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from gateway.adapters.labexport import import_export
from gateway.adapters.loader import Network, load_network
from gateway.hl7.parser import parse
from gateway.ingest import IngestService
from gateway.store.sql import SqlStore
from tests.adapters.conftest import NETWORK_HEADER
from tests.adapters.test_labexport import GOOD, LANZANI_HEADER, ROWS, xlsx_of
from tests.fuzz.mutations import Mutant, mutated_messages
from tests.support import migrated_store, process

KEY = b"fuzz-pseudonym-key-0123456789abcd"


@pytest.fixture(scope="module")
def fuzz_store(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SqlStore]:
    path = tmp_path_factory.mktemp("fuzz") / "fuzz.db"
    with migrated_store(f"sqlite:///{path}") as store:
        yield store


@cache
def network() -> Network:
    """Not a fixture: hypothesis puts every argument's repr in its reports."""
    return load_network()


@given(mutant=mutated_messages())
@example(mutant=Mutant(43, 453, 3))  # found: "MSH" alone on a line broke AckHeader.from_raw
@example(mutant=Mutant(386, 386, 3))  # found: MSH-2 "AAAA…" gave an ACK split at every "A"
def test_every_mutated_message_is_answered_with_an_ack(
        fuzz_store: SqlStore, mutant: Mutant) -> None:
    service = IngestService(fuzz_store, network(), KEY, message_time_budget=5)
    outcome = process(service, mutant.text.encode("utf-8", "surrogatepass"), "mllp")
    assert outcome.status != "refused", outcome
    assert outcome.responses
    for frame in outcome.responses:
        msa = next(s for s in parse(frame).segments if s.name == "MSA")
        assert msa.get(1) in ("AA", "AE", "AR", "CA", "CE", "CR")


CELL = st.text(alphabet=st.sampled_from(list(",;\t\"\r\n =+-@0123456789.<>/:TZé%a")),
               max_size=30)


@given(st.lists(st.lists(CELL, max_size=18), max_size=12), st.sampled_from([",", ";", "\t"]))
def test_generated_csv_always_gets_a_report(
        fuzz_store: SqlStore, rows: list[list[str]], sep: str) -> None:
    body = "\n".join(sep.join(r) for r in rows)
    data = (NETWORK_HEADER.replace(",", sep) + "\n" + body).encode()
    report = import_export(fuzz_store, network(), "cf-lanzani", data, "gen.csv", KEY)
    assert report.error is not None or report.rows == report.accepted + len(
        {i.row for i in report.rejected})


@given(st.integers(0, 2**32 - 1), st.integers(1, 6))
def test_mutated_csv_always_gets_a_report(
        fuzz_store: SqlStore, seed: int, rounds: int) -> None:
    rng = random.Random(seed)
    data = bytearray(("\n".join((NETWORK_HEADER, GOOD, *ROWS)) + "\n").encode())
    for _ in range(rounds):
        at = rng.randrange(len(data))
        data[at:at + rng.randrange(0, 5)] = rng.choice(
            (b'"', b"\n", b",", b"\x00", b"\xff\xfe", b"=cmd|' /C calc'!A0", b"9" * 140_000))
    report = import_export(fuzz_store, network(), "cf-lanzani", bytes(data), "mut.csv", KEY)
    assert report.file == "mut.csv"


@cache
def workbook() -> bytes:
    return xlsx_of([LANZANI_HEADER, ["BG-7", "FT01", "LOT-9", "CARCIK", "", "2026-11-03",
                                     "CAR", "CAR+", 41.5, "%", "", "", ""]])


@given(st.integers(0, 2**32 - 1), st.integers(1, 8))
@example(4_142_389_018, 2)  # found: broken sheet XML raised from iter_rows (a 500)
@example(968, 1)  # found: a workbook without worksheets raised IndexError (a 500)
@example(1_295_381, 1)  # found: zipfile's NotImplementedError (zip version 13.8) escaped
def test_a_mutated_xlsx_always_gets_a_report(
        fuzz_store: SqlStore, seed: int, rounds: int) -> None:
    rng = random.Random(seed)
    data = _mutated_parts(workbook(), rng, rounds) if rng.random() < 0.6 else _flipped(
        workbook(), rng, rounds)
    report = import_export(fuzz_store, network(), "cf-lanzani", data, "mut.xlsx", KEY)
    assert report.file == "mut.xlsx"


def _flipped(data: bytes, rng: random.Random, rounds: int) -> bytes:
    out = bytearray(data)
    for _ in range(rounds):
        out[rng.randrange(len(out))] = rng.randrange(256)
    return bytes(out)


def _mutated_parts(data: bytes, rng: random.Random, rounds: int) -> bytes:
    """The workbook re-zipped with its XML parts damaged (a valid zip, broken content)."""
    source = zipfile.ZipFile(io.BytesIO(data))
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as z:
        for info in source.infolist():
            part = bytearray(source.read(info.filename))
            if info.filename.endswith(".xml") and rng.random() < 0.5:
                for _ in range(rounds):
                    at = rng.randrange(len(part) + 1)
                    part[at:at + rng.randrange(0, 20)] = rng.choice(
                        (b"<", b">", b"&", b'"', b"<c r=\"ZZZ99999999\">", b"<x:y/>",
                         b"<!DOCTYPE x [<!ENTITY a \"aaaa\">]>", b"\x00", b""))
            z.writestr(info.filename, bytes(part))
    return out.getvalue()


def test_the_mutations_start_from_the_shared_corpus_messages() -> None:
    """Without the corpus the mutated-message tests would fuzz nothing (and pass)."""
    from tests.fuzz.mutations import corpus_messages

    assert len(corpus_messages()) > 100
