"""Free text through the running gateway (real MLLP socket, real HTTP server): the polimi
note that named its patient and phone number reaches the FHIR API without them, and a
morphology finding sent as TX is kept."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import orjson
import pytest

from gateway.bus.base import Delivery, topic_for
from gateway.mapping.provenance import message_hash
from gateway.runtime import Gateway
from tests.support import settled
from tests.test_runtime import msa, send, start_gateway

# polimi (MSH-4 POLIMI): PID-5 Rossi^Nicolò, PID-13 mobile; the NTE after OBX 1 and the TX
# result OBX 2 repeat the name (other case, no accent), the phone and the date of birth.
POLIMI = (
    "MSH|^~\\&|LIS|POLIMI|GATEWAY|PLAGENCELL|20261127101500+0100||ORU^R01^ORU_R01|{cid}|P|"
    "2.5.1|||||ITA|UNICODE UTF-8\r"
    "PID|1||PM00123456^^^POLIMI^MR||Rossi^Nicolò||19610312|M|||||^PRN^CP^^^335^1234567\r"
    "OBR|1||F77^LIS|58410-2^CBC panel^LN|||20261127080000\r"
    "OBX|1|NM|HGB-B^Emoglobina^L||9.1|g/dl|12-16|L|||F|||20261127080000\r"
    "NTE|1||Paziente Rossi Nicolò (nato il 12/03/1961): se valori critici telefonare al "
    "335 1234567\r"
    "OBX|2|TX|MORPH^Morfologia ROSSI^L||Many spherocytes present. Referto per NICOLO ROSSI, "
    "cartella PM00123456.||||||F|||20261127080000\r")


@pytest.fixture
async def gateway(tmp_path: Path, database_url: str) -> AsyncIterator[Gateway]:
    gw = await start_gateway(tmp_path, database_url)
    yield gw
    await gw.stop()


async def test_the_polimi_note_reaches_the_fhir_api_without_the_patient_s_name_or_phone(
        gateway: Gateway) -> None:
    [ack] = await send(gateway, POLIMI.format(cid="FT0001").encode())
    assert msa(ack) == ["AA", "FT0001"]
    await settled(gateway)  # in the FHIR API once the projector wrote it
    async with httpx.AsyncClient() as http:
        r = await http.get(f"http://127.0.0.1:{gateway.http_port}/fhir/Observation",
                           params={"_count": "50"})
    assert r.status_code == 200
    observations = [e["resource"] for e in r.json().get("entry", ())]
    by_code = {o["code"]["coding"][-1]["code"]: o for o in observations}
    assert by_code["HGB-B"]["note"] == [{"text": "Paziente [NAME] [NAME] (nato il [DATE]): se "
                                                 "valori critici telefonare al [PHONE]"}]
    assert by_code["MORPH"]["valueString"] == (
        "Many spherocytes present. Referto per [NAME] [NAME], cartella [ID].")
    assert by_code["MORPH"]["code"]["text"] == "Morfologia [NAME]"
    body = orjson.dumps(observations).decode()
    for private in ("Rossi", "ROSSI", "Nicol", "NICOLO", "1234567", "12/03/1961", "PM00123456"):
        assert private not in body


async def test_the_conversion_report_counts_what_was_scrubbed_never_the_values(
        gateway: Gateway) -> None:
    await send(gateway, POLIMI.format(cid="FT0002").encode())
    assert gateway.store is not None
    record = gateway.store.inbox_find("LIS", "POLIMI", "FT0002")
    assert record is not None and record.status == "processed"
    async with httpx.AsyncClient() as http:
        r = await http.get(f"http://127.0.0.1:{gateway.http_port}/admin/messages/{record.id}")
    assert r.status_code == 200
    [line] = [i["diagnostics"] for i in r.json()["report"]["issue"]
              if i["location"] == ["free text"]]
    # note: Rossi Nicolò; TX: NICOLO ROSSI; OBX-3.2 as code.text and coding.display: ROSSI
    assert line.endswith("DATE 1, ID 1, NAME 6, PHONE 1 (4 texts)")
    assert "Rossi" not in r.text and "1234567" not in r.text and "PM00123456" not in r.text


async def test_msh_10_leaves_the_edge_only_as_its_keyed_hash_on_the_bus_and_in_provenance(
        gateway: Gateway) -> None:
    control = "PM00123456-20261127"  # a control id built from the MRN, as senders do
    [ack] = await send(gateway, POLIMI.format(cid=control).encode())
    assert msa(ack) == ["AA", control]  # the sender gets its MSH-10 back in MSA-2
    assert gateway.service is not None and gateway.bus is not None
    hashed = message_hash(gateway.service.key, "polimi", "POLIMI", control)
    consumer = gateway.bus.bus.subscribe("test-msh10", [topic_for("Observation"),
                                                        topic_for("Provenance")])
    await consumer.start()
    got: list[Delivery] = []
    try:
        async def some() -> bool:
            got.extend(await consumer.getmany(max_wait=0.2))
            return len({d.topic for d in got}) == 2
        for _ in range(100):
            if await some():
                break
    finally:
        await consumer.stop()
    assert got and all(d.headers["message-id"] == hashed for d in got)
    for record in got:
        assert control not in str(record.headers) and "PM00123456" not in str(record.headers)
        assert b"PM00123456" not in (record.value or b"")
    provenance = orjson.loads(next(d.value for d in got if d.topic.endswith("Provenance")))
    assert provenance["entity"][0]["what"]["identifier"]["value"] == hashed


async def test_a_refused_message_is_logged_by_the_hash_of_its_msh_10_not_the_msh_10(
        gateway: Gateway, caplog: pytest.LogCaptureFixture) -> None:
    control = "PM00123456-BAD"
    bad = POLIMI.format(cid=control).replace("|9.1|", "|nove|")  # OBX-5 NM not a number
    with caplog.at_level("WARNING"):
        [ack] = await send(gateway, bad.encode())
    assert msa(ack) == ["AE", control]
    assert gateway.service is not None
    hashed = message_hash(gateway.service.key, "polimi", "POLIMI", control)
    lines = [r.getMessage() for r in caplog.records if "not mapped" in r.getMessage()]
    assert lines and all(f"msh10#{hashed[:12]}" in line for line in lines)
    assert all("PM00123456" not in r.getMessage() for r in caplog.records)
