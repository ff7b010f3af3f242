"""MLLP with mutual TLS and ``--mllp-require-client-cert``: the site file's ``senders``
name the certificate identities (subject CN or subjectAltName) allowed to send for the
site; another site's certificate gets AR with an ERR at MSH-4, over real TLS sockets."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import trustme

from gateway.adapters.loader import EXAMPLE_SITES
from gateway.bus.settings import BusSettings
from gateway.config import Settings
from gateway.errors import ConfigError
from gateway.hl7.mllp import MllpClient, client_ssl_context
from gateway.runtime import Gateway
from gateway.security.settings import AuthSettings
from tests.test_runtime import err, msa, oru


def _pki(tmp_path: Path) -> dict[str, str]:
    ca = trustme.CA()
    blobs = {"ca": ca.cert_pem,
             "server": ca.issue_cert("127.0.0.1").private_key_and_cert_chain_pem,
             # Bergamo's lab: named by a subjectAltName; Monza's: by its CN
             "hpg23": ca.issue_cert("lab.hpg23.example").private_key_and_cert_chain_pem,
             "monza": ca.issue_cert("x.example", common_name="mllp-monza")
             .private_key_and_cert_chain_pem}
    out = {}
    for name, blob in blobs.items():
        blob.write_to_path(str(tmp_path / f"{name}.pem"))
        out[name] = str(tmp_path / f"{name}.pem")
    return out


def _sites(tmp_path: Path) -> Path:
    sites = tmp_path / "sites"
    shutil.copytree(EXAMPLE_SITES, sites)
    for site, sender in (("hpg23", "lab.hpg23.example"), ("asstmonza", "mllp-monza")):
        path = sites / f"{site}.yaml"
        path.write_text(path.read_text() + f"\nsenders: [{sender}]\n")
    return sites


async def _send(gw: Gateway, pki: dict[str, str], who: str, message: bytes) -> bytes:
    assert gw.mllp is not None
    ctx = client_ssl_context(pki["ca"], pki[who])
    async with await MllpClient.connect("127.0.0.1", gw.mllp.port, ssl_context=ctx,
                                        timeout=10) as client:
        [ack] = await client.send(message)
    return ack


async def test_a_certificate_sends_only_for_the_sites_that_name_it(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    pki = _pki(tmp_path)
    settings = Settings(http_port=0, mllp_port=0, data_dir=tmp_path / "var",
                        sites=_sites(tmp_path), bus=BusSettings(node_id="t"),
                        mllp_tls_cert=Path(pki["server"]), mllp_tls_client_ca=Path(pki["ca"]),
                        auth=AuthSettings(mllp_require_client_cert=True))
    gw = Gateway(settings)
    await gw.start()
    try:
        own = await _send(gw, pki, "hpg23", oru("CERT1"))
        foreign = await _send(gw, pki, "monza", oru("CERT2"))
        monza = await _send(gw, pki, "monza", oru("CERT3", facility="ASSTMONZA"))
        assert gw.store is not None
        stored = gw.store.inbox_find("LAB", "ASSTMONZA", "CERT3")
        refused = gw.store.inbox_find("LAB", "HPG23", "CERT2")
    finally:
        await gw.stop()
    assert "no 'senders' in the site files of cf-calori" in caplog.text  # said at start
    assert msa(own) == ["AA", "CERT1"]
    assert msa(foreign) == ["AR", "CERT2"] and err(foreign).startswith("MSH^1^4")
    assert b"belongs to site hpg23" in foreign and b"mllp-monza" in foreign
    assert b"belongs to site" not in monza and stored is not None  # its own site: accepted
    assert refused is None  # refused before the inbox


async def test_requiring_client_certificates_without_mutual_tls_refuses_to_start(
        tmp_path: Path) -> None:
    settings = Settings(http_port=0, mllp_port=0, data_dir=tmp_path / "var",
                        bus=BusSettings(node_id="t"),
                        auth=AuthSettings(mllp_require_client_cert=True))
    gw = Gateway(settings)
    with pytest.raises(ConfigError, match="mutual TLS"):
        await gw.start()
    await gw.stop()
