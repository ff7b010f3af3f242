"""SMART Backend Services against the running gateway: the token endpoint with real keys,
every bad client assertion of issue 10 refused with a precise error, and the server keeps
serving."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import jwt
import pytest

from gateway.runtime import Gateway
from gateway.security import keys
from tests.security.support import (
    ApiClient,
    assertion,
    bearer,
    get_token,
    start,
    token_form,
    write_clients,
)

READER = ApiClient("reader", ["system/Observation.rs", "system/Patient.r"])
RSA = ApiClient("rsa-client", ["system/*.rs"], alg="RS384")


@pytest.fixture
async def gateway(tmp_path: Path) -> AsyncIterator[Gateway]:
    gw = await start(tmp_path, write_clients(tmp_path / "clients.yaml", READER, RSA))
    yield gw
    await gw.stop()


def base(gw: Gateway) -> str:
    return f"http://127.0.0.1:{gw.http_port}"


async def test_a_client_gets_a_token_with_the_granted_scopes_and_reads_with_it(
        gateway: Gateway) -> None:
    url = f"{base(gateway)}/auth/token"
    async with httpx.AsyncClient() as http:
        r = await http.post(url, data=token_form(assertion(READER, url),
                                                 "system/Observation.rs system/Specimen.rs"))
        assert r.status_code == 200, r.text
        body = r.json()
        assert body["token_type"] == "bearer" and 0 < body["expires_in"] <= 3600
        assert body["scope"] == "system/Observation.rs"  # requested ∩ allowed
        assert r.headers["cache-control"] == "no-store"
        ok = await http.get(f"{base(gateway)}/fhir/Observation",
                            headers=bearer(body["access_token"]))
        assert ok.status_code == 200
        assert ok.headers["cache-control"] == "no-store"
        assert ok.headers["x-content-type-options"] == "nosniff"


async def test_an_rs384_client_and_a_narrower_scope_than_allowed_get_a_token(
        gateway: Gateway) -> None:
    token = await get_token(base(gateway), RSA, "system/Observation.r")
    claims = jwt.decode(token, options={"verify_signature": False})
    assert claims["scope"] == "system/Observation.r" and claims["sub"] == "rsa-client"


def _bad_assertions(url: str) -> list[tuple[str, str, str]]:
    """(what, signed assertion, expected words of the error_description)."""
    now = int(time.time())
    public_pem = READER.key.public_key().public_bytes(
        keys.serialization.Encoding.PEM, keys.serialization.PublicFormat.SubjectPublicKeyInfo)
    unsigned = jwt.encode({"iss": READER.id, "sub": READER.id, "aud": url, "exp": now + 60,
                           "jti": "n1"}, None, algorithm="none")
    good = assertion(READER, url)
    head, payload, sig = good.split(".")
    tampered_payload = jwt.utils.base64url_encode(
        jwt.api_jws.json.dumps({"iss": READER.id, "sub": READER.id, "aud": url,
                                "exp": now + 200, "jti": "evil"}).encode()).decode()
    return [
        ("expired", assertion(READER, url, exp=now - 60, iat=now - 120), "expired"),
        ("not yet valid", assertion(READER, url, nbf=now + 120), "not yet valid"),
        ("wrong audience", assertion(READER, "https://elsewhere.example/token"), "aud"),
        ("unknown kid", assertion(READER, url, headers={"kid": "nope"}), "kid 'nope'"),
        ("alg none", unsigned, "alg 'none'"),
        ("HS256 with the public key",
         _hs256(public_pem, {"iss": READER.id, "sub": READER.id, "aud": url,
                             "exp": now + 60, "jti": "h1"}, READER.kid), "alg 'HS256'"),
        ("tampered", f"{head}.{tampered_payload}.{sig}", "signature"),
        ("too long-lived", assertion(READER, url, exp=now + 3600), "5 minutes"),
        ("unknown client", assertion(ApiClient("stranger", ["system/*.rs"]), url),
         "no registered client"),
        ("sub is not iss", assertion(READER, url, sub="someone-else"), "sub"),
        ("no jti", assertion(READER, url, jti=None), "jti"),
        ("garbage", "not-a-jwt", "no JWT"),
    ]


def _hs256(secret: bytes, claims: dict[str, object], kid: str) -> str:
    import base64
    import hashlib
    import hmac
    import json

    def b64(data: bytes) -> str:
        return base64.urlsafe_b64encode(data).rstrip(b"=").decode()

    signing = b64(json.dumps({"alg": "HS256", "typ": "JWT", "kid": kid}).encode()) + "." + \
        b64(json.dumps(claims).encode())
    mac = hmac.new(secret, signing.encode(), hashlib.sha256).digest()
    return signing + "." + b64(mac)


async def test_every_bad_client_assertion_gets_invalid_client_and_the_server_keeps_serving(
        gateway: Gateway) -> None:
    url = f"{base(gateway)}/auth/token"
    async with httpx.AsyncClient() as http:
        for what, signed, words in _bad_assertions(url):
            r = await http.post(url, data=token_form(signed, "system/Observation.rs"))
            assert r.status_code == 401, (what, r.text)
            assert r.json()["error"] == "invalid_client", what
            assert words in r.json()["error_description"], (what, r.json())
        token = await get_token(base(gateway), READER)
        r = await http.get(f"{base(gateway)}/fhir/Observation", headers=bearer(token))
        assert r.status_code == 200


async def test_a_replayed_client_assertion_is_refused(gateway: Gateway) -> None:
    url = f"{base(gateway)}/auth/token"
    signed = assertion(READER, url)
    async with httpx.AsyncClient() as http:
        first = await http.post(url, data=token_form(signed, "system/Observation.rs"))
        again = await http.post(url, data=token_form(signed, "system/Observation.rs"))
    assert first.status_code == 200
    assert again.status_code == 401 and "replay" in again.json()["error_description"]


async def test_a_scope_the_client_may_not_have_gets_invalid_scope(gateway: Gateway) -> None:
    url = f"{base(gateway)}/auth/token"
    async with httpx.AsyncClient() as http:
        r = await http.post(url, data=token_form(assertion(READER, url),
                                                 "system/Patient.cud system/gateway.admin"))
    assert r.status_code == 400 and r.json()["error"] == "invalid_scope"


async def test_malformed_token_requests_get_rfc6749_errors(gateway: Gateway) -> None:
    url = f"{base(gateway)}/auth/token"
    signed = assertion(READER, url)
    async with httpx.AsyncClient() as http:
        wrong_grant = await http.post(url, data={**token_form(signed, "x"),
                                                 "grant_type": "password"})
        no_type = await http.post(url, data={**token_form(signed, "x"),
                                             "client_assertion_type": "other"})
        no_scope = await http.post(url, data=token_form(signed, ""))
        as_json = await http.post(url, json=token_form(signed, "system/Observation.rs"))
    assert wrong_grant.status_code == 400
    assert wrong_grant.json()["error"] == "unsupported_grant_type"
    assert no_type.json()["error"] == "invalid_request"
    assert "scope" in no_scope.json()["error_description"]
    assert as_json.status_code == 400 and "x-www-form-urlencoded" in as_json.text


async def test_expired_tampered_and_foreign_access_tokens_get_401_with_an_outcome(
        gateway: Gateway) -> None:
    token = await get_token(base(gateway), READER)
    head, payload, sig = token.split(".")
    claims = jwt.decode(token, options={"verify_signature": False})
    forged = jwt.utils.base64url_encode(jwt.api_jws.json.dumps(
        {**claims, "scope": "system/*.cruds"}).encode()).decode()
    own_key = keys.signing_key(gateway.settings.data_dir)
    expired = jwt.encode({**claims, "exp": int(time.time()) - 10}, own_key,
                         algorithm="ES384", headers={"kid": keys.public_jwk(own_key)["kid"]})
    foreign = jwt.encode(claims, keys.generate("ES384"), algorithm="ES384")
    odd_kid = jwt.encode(claims, keys.generate("ES384"), algorithm="ES384",
                         headers={"kid": 'é"\r\nX-Injected: 1'})
    cases = [("tampered", f"{head}.{forged}.{sig}", "does not verify"),
             ("odd kid", odd_kid, "not issued by"),
             ("expired", expired, "expired"), ("foreign", foreign, "not issued by"),
             ("garbage", "garbage", "no JWT")]
    async with httpx.AsyncClient() as http:
        for what, bad, words in cases:
            r = await http.get(f"{base(gateway)}/fhir/Observation", headers=bearer(bad))
            assert r.status_code == 401, what
            assert r.headers["www-authenticate"].startswith('Bearer realm="plagencell"')
            assert 'error="invalid_token"' in r.headers["www-authenticate"]
            assert "x-injected" not in r.headers
            issue = r.json()["issue"][0]
            assert issue["code"] == "login" and words in issue["diagnostics"], (what, issue)
        assert (await http.get(f"{base(gateway)}/fhir/Observation",
                               headers=bearer(token))).status_code == 200


async def test_the_token_of_a_client_removed_from_the_clients_file_stops_working(
        gateway: Gateway, tmp_path: Path) -> None:
    token = await get_token(base(gateway), READER)
    clients = tmp_path / "clients.yaml"
    clients.write_text(clients.read_text().split("- id: rsa-client")[0]
                       .replace("- id: reader", "- id: reader-renamed"))
    gateway.reload_sites()  # SIGHUP re-reads the clients file too
    async with httpx.AsyncClient() as http:
        r = await http.get(f"{base(gateway)}/fhir/Observation", headers=bearer(token))
    assert r.status_code == 401
    assert "no longer registered" in r.json()["issue"][0]["diagnostics"]


async def test_smart_configuration_and_capability_statement_announce_the_token_endpoint(
        gateway: Gateway) -> None:
    async with httpx.AsyncClient() as http:
        for path in ("/.well-known/smart-configuration", "/fhir/.well-known/smart-configuration"):
            conf = (await http.get(base(gateway) + path)).json()
            assert conf["token_endpoint"] == f"{base(gateway)}/auth/token"
            assert {"client-confidential-asymmetric", "permission-v2"} <= set(conf["capabilities"])
            assert conf["token_endpoint_auth_signing_alg_values_supported"] == ["RS384", "ES384"]
        cap = (await http.get(f"{base(gateway)}/fhir/metadata")).json()
    security = cap["rest"][0]["security"]
    assert security["service"][0]["coding"][0]["code"] == "SMART-on-FHIR"
    [uris] = security["extension"]
    assert uris["extension"] == [{"url": "token", "valueUri": f"{base(gateway)}/auth/token"}]
