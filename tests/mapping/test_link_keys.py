"""``link_keys`` names every pseudonym link the mapping of a message looks up, so that the
ingest can fetch them for a whole group in one statement."""

from __future__ import annotations

from pathlib import Path

import pytest

from gateway.hl7.parser import parse
from gateway.mapping import link_keys, map_message

from .support import KEY, RECEIVED, hl7, network

SAMPLE = Path(__file__).resolve().parents[1] / "samples" / "oru_r01_10obx.hl7"
MSH = "MSH|^~\\&|ADT|HSR|GW|PLAGENCELL|20260101120000||{type}|C1|P|2.5.1"
MESSAGES = {
    "ORU with MRN and codice fiscale": SAMPLE.read_text().replace("\n", "\r"),
    "ADT^A40 merge": hl7(MSH.format(type="ADT^A40^ADT_A39"), "EVN|A40",
                         "PID|1||MRN-NEW^^^HSR^MR~RSSMRA80A01F205X^^^MEF^NNITA||ROSSI^MARIO",
                         "MRG|MRN-OLD^^^HSR^MR~MRN-OLDER^^^HSR^MR"),
    "ADT^A04 without identifiers the site knows": hl7(
        MSH.format(type="ADT^A04^ADT_A01"), "EVN|A04", "PID|1||X1^^^ELSEWHERE||A^B"),
}


@pytest.mark.parametrize("text", MESSAGES.values(), ids=MESSAGES.keys())
def test_link_keys_are_the_keys_the_mapping_looks_up(text: str) -> None:
    msg = parse(text)
    site = network().site_for(msg.sending_facility)
    assert site is not None
    asked: list[str] = []

    def lookup(key: str) -> str | None:
        asked.append(key)
        return None

    map_message(msg, site, pseudonym_key=KEY, received=RECEIVED, lookup_link=lookup)
    keys = link_keys(msg, site, pseudonym_key=KEY)
    assert asked and set(asked) == set(keys)


def test_link_keys_depend_on_the_pseudonym_key() -> None:
    msg = parse(MESSAGES["ADT^A40 merge"])
    site = network().site_for(msg.sending_facility)
    assert site is not None
    assert set(link_keys(msg, site, pseudonym_key=KEY)).isdisjoint(
        link_keys(msg, site, pseudonym_key=b"another-key-0123456789abcdef0123"))
