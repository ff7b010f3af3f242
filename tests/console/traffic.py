"""Real traffic for the console tests: every site's sample message over MLLP (with fresh
control ids), an enrolment (CRM^C01) at San Raffaele, an AE and an AR, and a lab export
over HTTP, into a running gateway."""

from __future__ import annotations

from pathlib import Path

import httpx

from gateway.hl7.mllp import MllpClient
from gateway.runtime import Gateway

SAMPLES = Path(__file__).resolve().parents[2] / "gateway" / "sites" / "samples"

# An enrolment at San Raffaele (tests/mapping/test_research.py): CSR-1 the study alias,
# CSR-4 the sponsor's subject number, CSR-6 registered on.
CRM = ("MSH|^~\\&|CTMS|HSR|GW|PLAGENCELL|20261110091500||CRM^C01^CRM_C01|{cid}|P|2.5.1\r"
       "PID|1||MRN{n}^^^HSR^MR||ROSSI^MARIO||19850110|M\r"
       "PV1|1|O\r"
       "CSR|CARTLBCL^HSR|||SUBJ-00{n}^^^SPONSOR||2026111{n}091500||||Y||ARM-A^Axi-cel arm^L\r")
# OBX-2 NM with a value that is not a number: the mapping answers AE (OBX-5)
BAD_VALUE = ("MSH|^~\\&|LIS|HPG23|GATEWAY|PLAGENCELL|20261120153000+0100||ORU^R01^ORU_R01|"
             "{cid}|P|2.5.1\r"
             "PID|1||7001234^^^HPG23^MR||Sample^Patient||19710305|F\r"
             "OBR|1|ORD1^HPG23|FIL1^HPG23|MON^Post-infusion monitoring^L|||20261120083000+0100\r"
             "OBX|1|NM|PCR^crp^L||not-a-number|mg/L^mg/L^UCUM|0-5|H|||F\r")
# MSH-4 names no site of the network: AR
UNKNOWN = ("MSH|^~\\&|LIS|NOWHERE|GATEWAY|PLAGENCELL|20261120153000+0100||ORU^R01^ORU_R01|"
           "{cid}|P|2.5.1\rPID|1||1^^^X^MR\r")


def with_control_id(raw: bytes, cid: str) -> bytes:
    """The sample with MSH-10 replaced (each send is a new message, not a resend)."""
    msh, _, rest = raw.partition(b"\r")
    fields = msh.split(b"|")
    fields[9] = cid.encode()
    return b"|".join(fields) + b"\r" + rest


def samples() -> list[tuple[str, bytes]]:
    return [(p.parent.name, p.read_bytes()) for p in sorted(SAMPLES.glob("*/*.hl7"))]


async def send_traffic(gw: Gateway, rounds: int = 3) -> dict[str, int]:
    """Sends the messages; returns how many got each ACK code."""
    assert gw.mllp is not None
    codes: dict[str, int] = {}
    messages = [with_control_id(raw, f"{site.upper()}-C{n:03d}")
                for n in range(rounds) for site, raw in samples()]
    messages += [CRM.format(cid=f"CRM-C{n}", n=n).encode() for n in range(1, 4)]
    messages += [BAD_VALUE.format(cid="BAD-1").encode(), UNKNOWN.format(cid="UNK-1").encode()]
    async with await MllpClient.connect("127.0.0.1", gw.mllp.port, timeout=30) as client:
        for message in messages:
            for ack in await client.send(message):
                code = ack.split(b"MSA|", 1)[1][:2].decode()
                codes[code] = codes.get(code, 0) + 1
    csv = (SAMPLES / "cf-verri" / "qc-export.csv").read_bytes()
    async with httpx.AsyncClient(timeout=30) as http:
        await http.post(f"http://127.0.0.1:{gw.http_port}/lab-exports?site=cf-verri",
                        content=csv, headers={"content-type": "text/csv",
                                              "x-filename": "qc-export.csv"})
    return codes
