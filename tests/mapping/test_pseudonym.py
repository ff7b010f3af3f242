"""Pseudonymisation: one Patient per person across sites, identifier links, dropped fields,
the key file, and no identifying value anywhere in the output (whole corpus)."""

from __future__ import annotations

import logging
import os
import stat
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.errors import ConfigError, InboundError
from gateway.hl7.parser import parse, split_messages
from gateway.mapping import map_message
from gateway.mapping.context import PSEUDONYM_SYSTEM
from gateway.mapping.pseudonym import (
    KEY_FILE_ENV,
    is_fiscal_code,
    load_or_create_key,
)

from .support import KEY, RECEIVED, assert_valid, by_type, convert, dumps, hl7, network, one

CF = "RSSMRA85T10A562S"


def adt(facility: str, pid: str, event: str = "A08", control: str = "ADT1") -> str:
    """An ADT patient update from ``facility`` (MSH-4) with the given PID."""
    return hl7(f"MSH|^~\\&|PAS|{facility}|GW|PLAGENCELL|20260101120000||ADT^{event}^ADT_A01|"
               f"{control}|P|2.5", f"EVN|{event}|20260101120000", pid, "PV1|1|I|W1^101^1")


# PID-3 MRN + CF; PID-5 name, 6 mother's maiden name, 7 birth, 8 sex, 11 address,
# 13 home phone, 19 SSN, 29/30 death.
PID_FULL = (f"PID|1||MRN12345^^^HSR^MR~{CF}^^^MEF^NNITA||ROSSI^MARIO^LUIGI|BIANCHI^ANNA|"
            "19850110083000|M|||VIA ROMA 1^^MILANO^MI^20100^IT||02-5555-1234|||||"
            "ACCT-77||||||||||")


def test_the_patient_keeps_only_the_pseudonym_sex_and_birth_year() -> None:
    result = convert(adt("HSR", PID_FULL))
    patient = one(result, "Patient")
    assert patient["identifier"][0]["system"] == PSEUDONYM_SYSTEM
    assert patient["identifier"][0]["type"]["coding"][0]["code"] == "ANON"
    assert patient["identifier"][0]["value"] == patient["id"]
    assert patient["gender"] == "male" and patient["birthDate"] == "1985"
    assert patient["meta"]["security"][0]["code"] == "PSEUDED"
    assert set(patient) == {"resourceType", "id", "meta", "identifier", "active", "gender",
                            "birthDate"}
    text = dumps([r for r in result.resources]).decode()
    for value in ("MRN12345", CF, "ROSSI", "BIANCHI", "VIA ROMA", "5555", "ACCT-77", "0110"):
        assert value not in text
    assert_valid(result.resources)


@pytest.mark.parametrize(("pid29", "pid30", "deceased"), [
    ("", "Y", True), ("", "N", False), ("20260105", "", True), ("", "", None)])
def test_deceased_is_kept_as_a_boolean(pid29: str, pid30: str, deceased: bool | None) -> None:
    pid = "PID|1||MRN1^^^HSR^MR||X^Y||1970|F" + "|" * 21 + f"{pid29}|{pid30}"  # PID-29, PID-30
    patient = one(convert(adt("HSR", pid)), "Patient")
    assert patient.get("deceasedBoolean") == deceased


def test_the_same_person_at_two_hospitals_with_the_codice_fiscale_is_one_patient() -> None:
    at_hsr = convert(adt("HSR", f"PID|1||MRN12345^^^HSR^MR~{CF}^^^MEF^NNITA||A^B||1985|M"))
    at_pavia = convert(adt("SMATTEO", f"PID|1||P-998^^^SMATTEO^MR~{CF}^^^SSN^NN||A^B||1985|M"))
    assert one(at_hsr, "Patient")["id"] == one(at_pavia, "Patient")["id"]
    without_cf = convert(adt("SMATTEO", "PID|1||P-998^^^SMATTEO^MR||A^B||1985|M"))
    assert one(without_cf, "Patient")["id"] != one(at_hsr, "Patient")["id"]  # no shared link


def test_a_patient_sent_alternately_by_two_sites_is_stored_once_without_new_versions(
        sqlite_url: str) -> None:
    """Regression: Patient.managingOrganization was the sending site, so each message from
    the other site made a new version of the shared Patient."""
    from gateway.store.sql import SqlStore

    store = SqlStore(sqlite_url)
    store.migrate()
    links: dict[str, str] = {}
    sends = [("HSR", f"PID|1||MRN12345^^^HSR^MR~{CF}^^^MEF^NNITA||A^B||1985|M"),
             ("SMATTEO", f"PID|1||P-998^^^SMATTEO^MR~{CF}^^^SSN^NN||C^D||1985|M")] * 2
    changes = []
    for n, (facility, pid) in enumerate(sends):
        patient = one(convert(adt(facility, pid, control=f"C{n}"), links=links), "Patient")
        with store.transaction() as tx:
            changes.append(tx.put(patient))
    store.close()
    assert len({c.id for c in changes}) == 1
    assert [(c.version_id, c.changed) for c in changes] == [
        (1, True), (1, False), (1, False), (1, False)]


def test_a_later_message_with_only_the_mrn_resolves_through_the_link_table() -> None:
    links: dict[str, str] = {}
    first = convert(adt("HSR", f"PID|1||MRN12345^^^HSR^MR~{CF}^^^MEF^NNITA||A^B||1985|M"),
                    links=links)
    assert len(first.new_links) == 2  # one link key per CX of the PID
    assert all(CF not in k and "MRN12345" not in k for k in first.new_links)
    later = convert(adt("HSR", "PID|1||MRN12345^^^HSR^MR||A^B||1985|M", control="ADT2"),
                    links=links)
    assert one(later, "Patient")["id"] == one(first, "Patient")["id"]
    assert later.new_links == {}  # nothing new learned
    unlinked = convert(adt("HSR", "PID|1||MRN12345^^^HSR^MR||A^B||1985|M"))
    assert one(unlinked, "Patient")["id"] != one(first, "Patient")["id"]


def test_a_codice_fiscale_seen_later_supersedes_the_mrn_pseudonym() -> None:
    links: dict[str, str] = {}
    before = one(convert(adt("HSR", "PID|1||MRN12345^^^HSR^MR||A^B||1985|M"), links=links),
                 "Patient")
    after = convert(adt("HSR", f"PID|1||MRN12345^^^HSR^MR~{CF}^^^MEF^NNITA||A^B||1985|M"),
                    links=links)
    patients = {p["id"]: p for p in after.resources if p["resourceType"] == "Patient"}
    old = patients[before["id"]]
    assert old["active"] is False and old["link"][0]["type"] == "replaced-by"
    survivor = patients[old["link"][0]["other"]["reference"].split("/")[1]]
    assert survivor["link"] == [{"other": {"reference": f"Patient/{before['id']}"},
                                 "type": "replaces"}]


def test_two_fiscal_codes_sharing_an_mrn_are_never_merged() -> None:
    links: dict[str, str] = {}
    first = one(convert(adt("HSR", f"PID|1||MRN1^^^HSR^MR~{CF}^^^MEF^NNITA"), links=links),
                "Patient")
    other_cf = "VRDGPP80A01F205X"
    second = convert(adt("HSR", f"PID|1||MRN1^^^HSR^MR~{other_cf}^^^MEF^NNITA"), links=links)
    patients = by_type(second, "Patient")
    assert [p["id"] for p in patients] != [first["id"]] and len(patients) == 1
    assert "link" not in patients[0]
    assert any(e.code == "conflict" and e.location == "PID[1]-3" for e in second.report)


def test_an_update_of_dropped_fields_only_gives_an_identical_patient() -> None:
    base = one(convert(adt("HSR", PID_FULL)), "Patient")
    moved = PID_FULL.replace("VIA ROMA 1^^MILANO^MI^20100^IT", "CORSO COMO 5^^MILANO^MI^20154^IT")
    renamed = moved.replace("ROSSI^MARIO^LUIGI", "ROSSI^MARIO").replace("02-5555-1234", "")
    updated = one(convert(adt("HSR", renamed, control="ADT9")), "Patient")
    assert dumps(updated) == dumps(base)


def test_the_mrn_authority_rules_of_the_site_choose_the_mrn() -> None:
    # Two PID-3 MRs; with no rules the first is the MRN, so another first id changes it.
    a = one(convert(adt("HSR", "PID|1||X1^^^LAB^MR~MRN1^^^HSR^MR||A^B||1985|M")), "Patient")
    b = one(convert(adt("HSR", "PID|1||X2^^^LAB^MR~MRN1^^^HSR^MR||A^B||1985|M")), "Patient")
    assert a["id"] != b["id"]
    from gateway.adapters.site import IdentifierRules, Site

    site = Site(id="hsr", name="HSR", kind="hospital", facilities=["HSR"],
                identifiers=IdentifierRules(mrn_authorities=["HSR"]))
    ids = set()
    for first in ("X1", "X2"):
        msg = parse(adt("HSR", f"PID|1||{first}^^^LAB^MR~MRN1^^^HSR^MR||A^B||1985|M"))
        result = map_message(msg, site, pseudonym_key=KEY, received=RECEIVED)
        ids.add(one(result, "Patient")["id"])
    assert len(ids) == 1


def test_a_declared_codice_fiscale_of_the_wrong_shape_is_reported_not_trusted() -> None:
    result = convert(adt("HSR", "PID|1||MRN1^^^HSR^MR~NOTAFISCALCODE^^^MEF^NNITA||A^B||1985|M"))
    assert any(e.location == "PID-3[2]" and e.severity == "warning" for e in result.report)
    assert "NOTAFISCALCODE" not in dumps(result.resources).decode()


@pytest.mark.parametrize(("value", "ok"), [
    (CF, True), ("RSSMRA85T10A56NS", True),  # omocodia: a digit replaced by a letter
    ("RSSMRA85Z10A562S", False),  # Z is no month
    ("RSSMRA85T10A562", False), ("123-45-6789", False)])
def test_fiscal_code_shape(value: str, ok: bool) -> None:
    assert is_fiscal_code(value) is ok


# --- the key ------------------------------------------------------------------------------
def test_a_key_is_created_once_with_mode_0600_and_never_logged(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    monkeypatch.delenv(KEY_FILE_ENV, raising=False)
    with caplog.at_level(logging.INFO):
        key = load_or_create_key(tmp_path / "data")
    path = tmp_path / "data" / "pseudonym.key"
    assert len(key) == 32 and path.read_bytes() == key
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert len(caplog.records) == 1 and str(path) in caplog.text
    assert key.hex() not in caplog.text and repr(key) not in caplog.text
    caplog.clear()
    assert load_or_create_key(tmp_path / "data") == key and not caplog.records


def test_the_key_file_setting_wins_and_a_short_key_is_refused(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    configured = tmp_path / "site.key"
    configured.write_bytes(b"k" * 32)
    monkeypatch.setenv(KEY_FILE_ENV, str(configured))
    assert load_or_create_key(tmp_path / "data") == b"k" * 32
    assert not (tmp_path / "data").exists()
    configured.write_bytes(b"short")
    with pytest.raises(ConfigError, match="fewer than"):
        load_or_create_key(tmp_path / "data")


# --- the whole corpus: nothing identifying comes out --------------------------------------
PRIVATE_FIELDS = (5, 6, 11, 13, 14, 19)


def _parts(raw: str) -> set[str]:
    """Whole components and sub-components of ≥ 4 characters (shorter ones such as "M" or
    "IT" occur everywhere by coincidence)."""
    return {p.strip() for p in raw.replace("~", "^").replace("&", "^").split("^")
            if len(p.strip()) >= 4}


def _scrubbed(text: str, sep: str) -> str:
    """The message with PID-5, 6, 11, 13, 14, 19 emptied."""
    lines = []
    for line in text.split("\r"):
        if line.startswith("PID" + sep):
            fields = line.split(sep)
            for n in PRIVATE_FIELDS:
                if n < len(fields):
                    fields[n] = ""
            line = sep.join(fields)
        lines.append(line)
    return "\r".join(lines)


def _strings(obj: object) -> set[str]:
    if isinstance(obj, dict):
        return set().union(*(_strings(v) for v in obj.values())) if obj else set()
    if isinstance(obj, list):
        return set().union(*(_strings(v) for v in obj)) if obj else set()
    return {obj} if isinstance(obj, str) else set()


def _map(text: str) -> list[dict[str, object]] | None:
    try:
        return map_message(parse(text), network().sites["hsr"], pseudonym_key=KEY,
                           received=RECEIVED, studies=network().studies,
                           require_patient=False).resources
    except InboundError:
        return None


def test_no_identifying_pid_value_of_any_corpus_message_appears_in_the_output(
        corpus: Path) -> None:
    """PID-5, 6, 11, 13, 14, 19: no component appears in the output unless it also appears
    when those fields are emptied (a coincidence with another segment, e.g. a patient named
    "Patient"). PID-3 identifier values: never a whole string of the output."""
    checked = 0
    for path in sorted(corpus.rglob("*")):
        if path.is_dir() or path.suffix.lower() in (".json", ".fhir", ".csv", ".tsv", ".md",
                                                    ".xml", ".txt") or "LICENSE" in path.name:
            continue
        for text in split_messages(path.read_bytes()):
            try:
                msg = parse(text)
            except InboundError:
                continue
            pid, resources = msg.segment("PID"), _map(text)
            if pid is None or resources is None:
                continue
            out = dumps(resources).decode()
            private = set().union(*(_parts(pid.raw(n)) for n in PRIVATE_FIELDS))
            suspects = {v for v in private if v in out}
            if suspects:
                baseline = dumps(_map(_scrubbed(text, msg.enc.field)) or []).decode()
                assert not {v for v in suspects if v not in baseline}, path.name
            mrns = {r.c(1).strip() for r in pid.reps(3)} - {""}
            assert not mrns & _strings(resources), f"{path.name}: a PID-3 value in clear"
            checked += 1
    assert checked > 200


# --- properties ---------------------------------------------------------------------------
_ids = st.lists(st.tuples(st.from_regex(r"[A-Z0-9]{4,10}", fullmatch=True),
                          st.sampled_from(["HSR", "LAB", "RAD"])),
                min_size=1, max_size=4, unique_by=lambda t: t[1])


@settings(max_examples=60, deadline=None)
@given(ids=_ids, with_cf=st.booleans(), data=st.data())
def test_the_pseudonym_does_not_depend_on_the_order_of_pid_3_when_a_cf_is_present(
        ids: list[tuple[str, str]], with_cf: bool, data: st.DataObject) -> None:
    reps = [f"{v}^^^{a}^PI" for v, a in ids] + ([f"{CF}^^^MEF^NNITA"] if with_cf else [])
    shuffled = data.draw(st.permutations(reps))
    first = one(convert(adt("HSR", f"PID|1||{'~'.join(reps)}||A^B")), "Patient")
    second = one(convert(adt("HSR", f"PID|1||{'~'.join(shuffled)}||A^B")), "Patient")
    if with_cf:
        assert first["id"] == second["id"]
    # whatever the order, every identifier alone then resolves to the same patient
    links: dict[str, str] = {}
    patient = one(convert(adt("HSR", f"PID|1||{'~'.join(shuffled)}||A^B"), links=links),
                  "Patient")
    for value, authority in ids:
        alone = one(convert(adt("HSR", f"PID|1||{value}^^^{authority}^PI||A^B"), links=links),
                    "Patient")
        assert alone["id"] == patient["id"]
