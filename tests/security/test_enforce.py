"""The table from (method, path) to what a request needs, and requested ∩ allowed scopes
(fast unit tests; the running-server matrix is in test_enforcement_http)."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.security.enforce import OPEN_PATHS, need_of
from gateway.security.principal import ADMIN, AUDIT, EXPORT, INGEST, RAW, Principal
from gateway.security.tokens import grant


@pytest.mark.parametrize(("method", "path", "expected"), [
    ("GET", "/fhir/Observation/1", ("Observation", "r")),
    ("GET", "/fhir/Observation/1/_history/2", ("Observation", "r")),
    ("GET", "/fhir/Observation/1/_history", ("Observation", "r")),
    ("GET", "/fhir/Observation/_history", ("Observation", "r")),
    ("GET", "/fhir/_history", ("*", "r")),
    ("GET", "/fhir/Observation", ("Observation", "s")),
    ("POST", "/fhir/Observation/_search", ("Observation", "s")),
    ("POST", "/fhir/Observation", ("Observation", "c")),
    ("PUT", "/fhir/Observation/1", ("Observation", "u")),
    ("PATCH", "/fhir/Observation/1", ("Observation", "u")),
    ("DELETE", "/fhir/Observation/1", ("Observation", "d")),
    ("GET", "/fhir/ConceptMap/$translate", ("ConceptMap", "r")),
    ("POST", "/fhir/ConceptMap/abc/$translate", ("ConceptMap", "r")),
    ("GET", "/fhir/$everything-else", ("*", "r")),
])
def test_fhir_interactions_need_their_smart_permission(method: str, path: str,
                                                       expected: tuple[str, str]) -> None:
    need = need_of(method, path)
    assert (need.rtype, need.interaction) == expected and need.scope is None


@pytest.mark.parametrize(("method", "path", "scope"), [
    ("GET", "/fhir/AuditEvent", AUDIT), ("GET", "/fhir/AuditEvent/1", AUDIT),
    ("GET", "/admin/messages", ADMIN), ("POST", "/admin/messages/3/replay", ADMIN),
    ("GET", "/admin/messages/3/raw", RAW), ("POST", "/hl7v2", INGEST),
    ("GET", "/fhir/$export", EXPORT), ("GET", "/fhir/Patient/$export", EXPORT),
    ("GET", "/something/new", ADMIN), ("OPTIONS", "/fhir/Patient/1", ADMIN),
])
def test_gateway_endpoints_need_their_gateway_scope_and_unknown_ones_fail_closed(
        method: str, path: str, scope: str) -> None:
    assert need_of(method, path).scope == scope


def test_open_paths_and_the_lab_export_site() -> None:
    assert need_of("GET", "/healthz").open and need_of("GET", "/fhir/metadata").open
    assert need_of("POST", "/auth/token").open
    assert not need_of("GET", "/docs").open
    need = need_of("POST", "/lab-exports", b"site=hsr&layout=x")
    assert need.site == "hsr" and need.scope == INGEST
    bound = Principal("feed", frozenset({INGEST}), sites=frozenset({"hpg23"}))
    assert need.refusal(bound) == "the token is not bound to site hsr"
    assert need_of("POST", "/lab-exports", b"site=hpg23").refusal(bound) is None


@pytest.mark.parametrize(("requested", "allowed", "granted"), [
    (["system/Observation.rs"], {"system/Observation.rs"}, ["system/Observation.rs"]),
    (["system/Observation.r"], {"system/*.rs"}, ["system/Observation.r"]),
    (["system/*.r"], {"system/*.cruds"}, ["system/*.r"]),
    (["system/*.r"], {"system/Observation.rs"}, []),
    (["system/Observation.rsd"], {"system/Observation.rs"}, []),
    (["system/Patient.read"], {"system/Patient.read"}, ["system/Patient.read"]),
    (["system/gateway.admin"], {"system/*.cruds"}, []),
    (["patient/Observation.rs"], {"system/*.rs"}, []),
])
def test_granted_scopes_are_requested_and_allowed(requested: list[str], allowed: set[str],
                                                  granted: list[str]) -> None:
    assert grant(requested, frozenset(allowed)) == granted


def test_a_client_without_keys_cannot_use_the_token_endpoint() -> None:
    from gateway.security import keys
    from gateway.security.clients import Client
    from gateway.security.tokens import OAuthError, TokenService
    from tests.security.support import ApiClient, assertion

    oidc_only = Client("idp-app", "App", {}, frozenset({"system/Observation.rs"}), None, None)
    service = TokenService({"idp-app": oidc_only}, keys.generate("ES384"))
    signed = assertion(ApiClient("idp-app", ["system/Observation.rs"]), "https://gw/auth/token")
    with pytest.raises(OAuthError, match="gets its tokens from the OpenID Connect issuer"):
        service.check_assertion(signed, "https://gw/auth/token")


@settings(max_examples=300, deadline=None)
@given(method=st.sampled_from(["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"]),
       segments=st.lists(st.sampled_from(["fhir", "admin", "Patient", "AuditEvent", "_history",
                                          "$export", "1", "..", "", "metadata", "auth",
                                          "token", "docs", "hl7v2"]), max_size=5))
def test_no_path_is_open_unless_listed_and_none_is_left_unchecked(
        method: str, segments: list[str]) -> None:
    path = "/" + "/".join(segments)
    need = need_of(method, path)
    if need.open:
        assert path in OPEN_PATHS
    else:  # a token is always needed; only POST /fhir and the docs need no more than one
        assert need.scope is not None or need.rtype is not None \
            or path.rstrip("/") == "/fhir" \
            or path.startswith(("/docs", "/redoc", "/openapi.json"))
