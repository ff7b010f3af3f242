"""End to end through real sockets: MLLP and HTTP in, ACK out, resources in the store."""

from __future__ import annotations

import shutil
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from gateway.adapters.loader import EXAMPLE_SITES
from gateway.bus.settings import BusSettings
from gateway.config import Settings
from gateway.hl7.mllp import MllpClient
from gateway.hl7.parser import parse
from gateway.runtime import Gateway

# A post-infusion monitoring result from the Bergamo hospital lab. What matters:
# MSH-4 HPG23 (a known site), MSH-10 the control id, PID-3 MRN + codice fiscale (NNITA),
# OBX-2 NM with a UCUM unit, OBX-11 F.
ORU = ("MSH|^~\\&|LAB|HPG23|GATEWAY|PLAGENCELL|20261127101500+0100||ORU^R01^ORU_R01|{cid}|P|2.5.1\r"
       "PID|1||MRN123^^^HPG23^MR~RSSMRA80A01F205X^^^MEF^NNITA||Rossi^Mario||19800101|M\r"
       "OBR|1||FILL1^LAB|1988-5^CRP^LN|||20261127080000\r"
       "OBX|1|NM|1988-5^C reactive protein^LN||{value}|mg/L^mg/L^UCUM|0-5|H|||F|||20261127080000\r")


def oru(cid: str, value: str = "12.5", facility: str = "HPG23") -> bytes:
    return ORU.format(cid=cid, value=value).replace("|HPG23|", f"|{facility}|", 1).encode()


def msa(ack: bytes) -> list[str]:
    seg = next(s for s in parse(ack).segments if s.name == "MSA")
    return [seg.get(1), seg.get(2)]


def err(ack: bytes) -> str:
    seg = next(s for s in parse(ack).segments if s.name == "ERR")
    return seg.raw(2)


async def start_gateway(tmp_path: Path, database_url: str | None = None,
                        sites: Path = EXAMPLE_SITES) -> Gateway:
    settings = Settings(http_port=0, mllp_port=0, data_dir=tmp_path / "var",
                        database_url=database_url, sites=sites,
                        bus=BusSettings(node_id="test-node"))
    gateway = Gateway(settings)
    await gateway.start()
    return gateway


@pytest.fixture
async def gateway(tmp_path: Path, database_url: str) -> AsyncIterator[Gateway]:
    gw = await start_gateway(tmp_path, database_url)
    yield gw
    await gw.stop()


async def send(gw: Gateway, *messages: bytes) -> list[bytes]:
    assert gw.mllp is not None
    async with await MllpClient.connect("127.0.0.1", gw.mllp.port, timeout=10) as client:
        out: list[bytes] = []
        for message in messages:
            out.extend(await client.send(message))
        return out


async def test_healthz_answers_200_once_both_listeners_accept(gateway: Gateway) -> None:
    async with httpx.AsyncClient() as http:
        r = await http.get(f"http://127.0.0.1:{gateway.http_port}/healthz")
    assert r.status_code == 200
    assert r.json()["status"] == "ok"


async def test_an_oru_over_mllp_is_stored_before_its_aa(gateway: Gateway) -> None:
    [ack] = await send(gateway, oru("MSG0001"))
    assert msa(ack) == ["AA", "MSG0001"]
    assert gateway.store is not None
    record = gateway.store.inbox_find("LAB", "HPG23", "MSG0001")
    assert record is not None and record.status == "processed"
    types = {ref.split("/")[0] for ref in record.resource_refs}
    assert {"Patient", "Observation", "Provenance"} <= types
    obs_ref = next(r for r in record.resource_refs if r.startswith("Observation/"))
    observation = gateway.store.read("Observation", obs_ref.split("/")[1])
    assert observation is not None
    assert observation["valueQuantity"]["value"] == 12.5


async def test_a_resent_message_gets_the_same_answer_and_no_second_effect(
        gateway: Gateway) -> None:
    first = await send(gateway, oru("MSG0002"))
    again = await send(gateway, oru("MSG0002"))
    assert again == first
    assert gateway.store is not None
    record = gateway.store.inbox_find("LAB", "HPG23", "MSG0002")
    assert record is not None
    assert all(ref.endswith("/_history/1") for ref in record.resource_refs)


async def test_an_unknown_facility_gets_ar_naming_msh4_and_is_kept(gateway: Gateway) -> None:
    [ack] = await send(gateway, oru("MSG0003", facility="NOWHERE"))
    assert msa(ack) == ["AR", "MSG0003"]
    assert err(ack).startswith("MSH^1^4")
    async with httpx.AsyncClient() as http:
        r = await http.get(f"http://127.0.0.1:{gateway.http_port}/admin/messages",
                           params={"status": "rejected"})
    assert [m["control_id"] for m in r.json()["messages"]] == ["MSG0003"]


async def test_a_non_numeric_nm_value_gets_ae_pointing_at_obx5(gateway: Gateway) -> None:
    [ack] = await send(gateway, oru("MSG0004", value="twelve"))
    assert msa(ack) == ["AE", "MSG0004"]
    assert err(ack).startswith("OBX^1^5")
    async with httpx.AsyncClient() as http:
        r = await http.get(f"http://127.0.0.1:{gateway.http_port}/admin/messages",
                           params={"status": "error"})
    [listed] = r.json()["messages"]
    assert listed["control_id"] == "MSG0004" and "OBX[1]-5" in listed["error"]


async def test_a_comparator_is_not_an_error(gateway: Gateway) -> None:
    [ack] = await send(gateway, oru("MSG0005", value="<0.5"))
    assert msa(ack)[0] == "AA"


async def test_bad_frames_get_ar_and_the_connection_stays_usable(gateway: Gateway) -> None:
    answers = await send(gateway, b"", b"\x00\x01binary junk\xff", b"MSH|^~", oru("MSG0006"))
    assert [parse(a).segment("MSA").get(1) for a in answers] == ["AR", "AR", "AR", "AA"]


async def test_http_ingest_answers_the_ack_with_a_status_per_outcome(gateway: Gateway) -> None:
    url = f"http://127.0.0.1:{gateway.http_port}/hl7v2"
    headers = {"content-type": "x-application/hl7-v2+er7"}
    async with httpx.AsyncClient() as http:
        ok = await http.post(url, content=oru("HTTP001"), headers=headers)
        ae = await http.post(url, content=oru("HTTP002", value="x"), headers=headers)
        ar = await http.post(url, content=oru("HTTP003", facility="NOWHERE"), headers=headers)
        bad_type = await http.post(url, content=b"{}",
                                   headers={"content-type": "application/json"})
    assert (ok.status_code, ae.status_code, ar.status_code) == (200, 422, 400)
    assert msa(ok.content) == ["AA", "HTTP001"]
    assert bad_type.status_code == 415


async def test_a_rejected_message_is_replayed_after_its_site_is_added(
        tmp_path: Path, sqlite_url: str) -> None:
    sites = tmp_path / "sites"
    shutil.copytree(EXAMPLE_SITES, sites)
    gw = await start_gateway(tmp_path, sqlite_url, sites)
    try:
        [ack] = await send(gw, oru("MSG0007", facility="NEWHOSP"))
        assert msa(ack)[0] == "AR"
        (sites / "newhosp.yaml").write_text(
            "id: newhosp\nname: New hospital\nkind: hospital\nfacilities: [NEWHOSP]\n")
        gw.reload_sites()
        async with httpx.AsyncClient() as http:
            base = f"http://127.0.0.1:{gw.http_port}/admin/messages"
            [rejected] = (await http.get(base, params={"status": "rejected"})).json()["messages"]
            r = await http.post(f"{base}/{rejected['id']}/replay")
            assert r.json()["status"] == "processed"
            after = (await http.get(base, params={"status": "rejected"})).json()
            assert after["messages"] == []
    finally:
        await gw.stop()


async def test_enhanced_mode_sends_a_commit_ack_then_the_application_ack(
        gateway: Gateway) -> None:
    message = oru("MSG0008").replace(b"|P|2.5.1\r", b"|P|2.5.1|||AL|AL\r")
    answers = await send(gateway, message)
    assert [msa(a)[0] for a in answers] == ["CA", "AA"]


async def test_a_message_asking_for_no_ack_still_gets_a_commit_ack(gateway: Gateway) -> None:
    # MSH-15/16 NE/NE (ELR "no ack" profiles): the MLLP sender still needs an answer
    message = oru("MSG0009").replace(b"|P|2.5.1\r", b"|P|2.5.1|||NE|NE\r")
    answers = await send(gateway, message)
    assert [msa(a) for a in answers] == [["CA", "MSG0009"]]


async def test_mllp_over_mutual_tls_needs_a_client_certificate_from_the_configured_ca(
        tmp_path: Path, sqlite_url: str) -> None:
    import ssl

    import trustme

    from gateway.hl7.mllp import client_ssl_context

    ca = trustme.CA()
    server = ca.issue_cert("127.0.0.1")
    client = ca.issue_cert("lab.hpg23.example")
    for name, blob in (("ca.pem", ca.cert_pem), ("server.pem",
                       server.private_key_and_cert_chain_pem),
                       ("client.pem", client.private_key_and_cert_chain_pem)):
        blob.write_to_path(str(tmp_path / name))
    settings = Settings(http_port=0, mllp_port=0, data_dir=tmp_path / "var",
                        database_url=sqlite_url, mllp_tls_cert=tmp_path / "server.pem",
                        mllp_tls_client_ca=tmp_path / "ca.pem")
    gw = Gateway(settings)
    await gw.start()
    try:
        assert gw.mllp is not None
        trusted = client_ssl_context(str(tmp_path / "ca.pem"), str(tmp_path / "client.pem"))
        async with await MllpClient.connect("127.0.0.1", gw.mllp.port, ssl_context=trusted,
                                            timeout=10) as c:
            [ack] = await c.send(oru("TLS0001"))
        assert msa(ack) == ["AA", "TLS0001"]
        anonymous = client_ssl_context(str(tmp_path / "ca.pem"))
        with pytest.raises((ssl.SSLError, ConnectionError, OSError)):
            async with await MllpClient.connect("127.0.0.1", gw.mllp.port,
                                                ssl_context=anonymous, timeout=5) as c:
                await c.send(oru("TLS0002"))
    finally:
        await gw.stop()


def batch_of(*messages: bytes) -> bytes:
    # FHS/BHS … BTS/FTS: what a LIMS exporting a day's results sends as one frame or file
    head = (b"FHS|^~\\&|LIS|HPG23|GATEWAY|NET|20261127100000+0100||||F0001\r"
            b"BHS|^~\\&|LIS|HPG23|GATEWAY|NET|20261127100000+0100||||B0001\r")
    tail = f"BTS|{len(messages)}\rFTS|1\r".encode()
    return head + b"".join(messages) + tail


async def test_a_batch_in_one_frame_gets_a_batch_of_acknowledgments(gateway: Gateway) -> None:
    [answer] = await send(gateway, batch_of(oru("BAT0001"), oru("BAT0002", value="bad")))
    lines = answer.decode().strip("\r").split("\r")
    assert [ln[:3] for ln in lines if ln[:3] in ("FHS", "BHS", "BTS", "FTS")] == [
        "FHS", "BHS", "BTS", "FTS"]
    assert lines[1].split("|")[11] == "B0001"  # BHS-12: the batch it answers
    msas = [ln.split("|")[1:3] for ln in lines if ln.startswith("MSA")]
    assert msas == [["AA", "BAT0001"], ["AE", "BAT0002"]]
    assert "BTS|2" in lines


async def test_a_batch_over_http_answers_with_the_worst_status(gateway: Gateway) -> None:
    async with httpx.AsyncClient() as http:
        r = await http.post(f"http://127.0.0.1:{gateway.http_port}/hl7v2",
                            content=batch_of(oru("BAT0003"), oru("BAT0004", value="bad")),
                            headers={"content-type": "x-application/hl7-v2+er7"})
    assert r.status_code == 422
    assert r.content.count(b"MSA|") == 2
