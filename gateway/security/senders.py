"""Who may send for a site: the HTTP ingest token's ``sites`` and, over MLLP with mutual
TLS, the client certificate's identities against the site file's ``senders``.

A message whose MSH-4 belongs to a site the sender may not send for is refused before it is
stored: AR with an ERR at MSH-4 (HL7 table 0357 code 207). MSH-4 naming no site is left to
the normal path (AR 103).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

from gateway.adapters.loader import Network
from gateway.errors import InboundError
from gateway.hl7 import ack as acks
from gateway.hl7.mllp import Peer


def msh_headers(raw: bytes) -> Iterator[acks.AckHeader]:
    """The MSH of one message, or of every message of a batch."""
    for line in raw.replace(b"\n", b"\r").split(b"\r"):
        if line.startswith(b"MSH"):
            yield acks.AckHeader.from_raw(line)


def refusal(network: Network, raw: bytes, may_send_for: Callable[[str], bool],
            sender: str) -> tuple[acks.AckHeader, InboundError] | None:
    """The first message of ``raw`` whose MSH-4 site ``sender`` may not send for."""
    for header in msh_headers(raw):
        site = network.site_for(header.sending_facility.split(header.enc.component)[0])
        if site is not None and not may_send_for(site.id):
            return header, InboundError(
                f"MSH-4 {header.sending_facility} belongs to site {site.id}, for which "
                f"{sender} may not send", segment="MSH", field=4, code="207", ack_code="AR")
    return None


def refused_ack(header: acks.AckHeader, error: InboundError) -> bytes:
    text = acks.build_acks(header, [error])[-1]
    return acks.encode_ack(text, header.charset)


def mllp_refusal(network: Network, frame: bytes, peer: Peer) -> bytes | None:
    """The AR for a frame (one message or a batch) with a message whose MSH-4 site does not
    name the peer's certificate (CN or SAN) among its ``senders``; None when all may pass."""
    names = set(peer.cert_names)

    def may(site_id: str) -> bool:
        return bool(names & set(network.sites[site_id].senders))

    refused = refusal(network, frame, may, f"the certificate of {peer.cert_subject or peer}")
    return refused_ack(*refused) if refused is not None else None


def sites_without_senders(network: Network) -> list[str]:
    """Sites nobody may send for over MLLP once client certificates are required."""
    return sorted(site.id for site in network.sites.values() if not site.senders)
