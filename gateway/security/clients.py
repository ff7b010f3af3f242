"""The clients file: who may call the HTTP API, with which keys, scopes and data.

    clients:
      - id: dashboard                       # the SMART client_id (iss = sub of its assertions)
        name: CAR-T trial dashboard
        jwks: {keys: [{kty: EC, crv: P-384, kid: …, x: …, y: …}]}   # or jwks_file: a.json
        scopes: system/Observation.rs system/ResearchStudy.rs          # or a YAML list
        studies: [car-t-01, "https://clinicaltrials.gov/nctid|NCT01234567"]
        sites: [hsr]

Without ``jwks`` and ``jwks_file`` a client cannot use ``/auth/token``: its tokens come
from the OpenID Connect issuer (``--oidc-issuer``) only.

``studies`` entries: ``ResearchStudy/<id>`` (an id as is), ``system|value`` (an identifier)
or a bare value (a study of ``studies.yaml``, by id, identifier value or alias); all are
resolved to ResearchStudy ids (``gateway.mapping.research.study_id``). ``sites`` are site
ids of the loaded site files. Errors name the file, the line and the field; the gateway
does not start on a broken file.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jwt
import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from gateway.adapters.loader import Network, _compose, _validation_error, line_of
from gateway.errors import ConfigError
from gateway.mapping.research import study_id
from gateway.security.keys import ALGORITHMS
from gateway.security.principal import GATEWAY_SCOPES
from gateway.security.users import User, UserEntry, load_users

SCOPE = re.compile(r"^(system|user|patient)/(\*|[A-Z][A-Za-z]+)\."
                   r"(c?r?u?d?s?|read|write|\*)(\?[^ ]*)?$")


def scope_error(scope: str) -> str | None:
    """Why ``scope`` is no SMART v2 (or gateway) scope; None when it is one."""
    if scope in GATEWAY_SCOPES:
        return None
    if scope.startswith("system/gateway."):
        return f"unknown gateway scope {scope!r} (known: {', '.join(sorted(GATEWAY_SCOPES))})"
    match = SCOPE.match(scope)
    if match is None or match.group(3) == "":
        return (f"{scope!r} is no SMART v2 scope (system/<Type|*>.<cruds in this order>, "
                "e.g. system/Observation.rs)")
    return None


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ClientEntry(_Strict):
    id: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")
    name: str
    jwks: dict[str, Any] | None = Field(default=None, description="inline JWK Set")
    jwks_file: str | None = Field(default=None, description="JWK Set file (relative to "
                                  "the clients file)")
    scopes: list[str] = Field(min_length=1)
    studies: list[str] | None = None
    sites: list[str] | None = None

    @field_validator("scopes", mode="before")
    @classmethod
    def _split(cls, value: Any) -> Any:
        return value.split() if isinstance(value, str) else value

    @field_validator("scopes")
    @classmethod
    def _smart(cls, value: list[str]) -> list[str]:
        problems = [p for p in map(scope_error, value) if p]
        if problems:
            raise ValueError("; ".join(problems))
        return value


class ClientsFile(_Strict):
    clients: list[ClientEntry] = Field(default_factory=list)
    users: list[UserEntry] = Field(default_factory=list, description="people of the web "
                                   "console (gateway.security.users)")


@dataclass(frozen=True, slots=True)
class Client:
    """A registered client, resolved: keys by kid, study ids, site ids."""

    id: str
    name: str
    keys: dict[str, jwt.PyJWK]
    scopes: frozenset[str]
    studies: frozenset[str] | None
    sites: frozenset[str] | None

    def key(self, kid: str | None) -> jwt.PyJWK | None:
        if kid is None:  # one key: no kid needed
            return next(iter(self.keys.values())) if len(self.keys) == 1 else None
        return self.keys.get(kid)


def load_clients(path: Path, network: Network | None = None) -> dict[str, Client]:
    """Read and check a clients file; ConfigError naming file, line and field."""
    return load_access(path, network)[0]


def load_access(path: Path, network: Network | None = None
                ) -> tuple[dict[str, Client], dict[str, User]]:
    """The clients and the console users of a clients file."""
    data, root = _compose(path)
    try:
        parsed = ClientsFile.model_validate(data or {})
    except ValidationError as exc:
        raise _validation_error(path, exc, root) from exc
    out: dict[str, Client] = {}
    for i, entry in enumerate(parsed.clients):
        def fail(field: str, text: str, loc: list[int | str] | None = None,
                 i: int = i) -> ConfigError:
            line = line_of(root, ["clients", i, *(loc or [field])])
            return ConfigError(f"{path}:{line}: clients.{i}.{field}: {text}",
                               file=str(path), line=line, field=f"clients.{i}.{field}")
        if entry.id in out:
            raise fail("id", f"client {entry.id} is defined twice")
        out[entry.id] = Client(entry.id, entry.name, _keys(path, entry, fail),
                               frozenset(entry.scopes), _studies(entry, network, fail),
                               _sites(entry, network, fail))
    return out, _users(path, parsed.users, network, root)


def _users(path: Path, entries: list[UserEntry], network: Network | None,
           root: Any) -> dict[str, User]:
    def fail_of(i: int) -> Any:
        def fail(field: str, text: str, loc: list[int | str] | None = None) -> ConfigError:
            line = line_of(root, ["users", i, *(loc or [field])])
            return ConfigError(f"{path}:{line}: users.{i}.{field}: {text}",
                               file=str(path), line=line, field=f"users.{i}.{field}")
        return fail
    index = {id(e): i for i, e in enumerate(entries)}
    return load_users(path, entries,
                      lambda e: _studies(e, network, fail_of(index[id(e)])),
                      lambda e: _sites(e, network, fail_of(index[id(e)])))


def _keys(path: Path, entry: ClientEntry, fail: Any) -> dict[str, jwt.PyJWK]:
    if entry.jwks is not None and entry.jwks_file is not None:
        raise fail("jwks", "give one of jwks (inline) and jwks_file, not both")
    if entry.jwks is None and entry.jwks_file is None:
        return {}  # no key: its tokens come from the OIDC issuer only (--oidc-issuer)
    where = "jwks"
    jwks = entry.jwks
    if entry.jwks_file is not None:
        where, file = "jwks_file", path.parent / entry.jwks_file
        try:
            jwks = json.loads(file.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise fail(where, f"cannot read a JWK Set from {file}: {exc}") from exc
    keys: dict[str, jwt.PyJWK] = {}
    for n, jwk in enumerate((jwks or {}).get("keys") or []):
        if not isinstance(jwk, dict) or jwk.get("kty") not in ("EC", "RSA") \
                or "d" in jwk or jwk.get("alg", "ES384") not in ALGORITHMS:
            raise fail(where, f"keys.{n}: a public EC or RSA key (ES384/RS384) is required "
                       "(and never a private one)")
        try:
            key = jwt.PyJWK(jwk, algorithm=jwk.get("alg") or _default_alg(jwk))
        except jwt.PyJWTError as exc:
            raise fail(where, f"keys.{n}: not a usable key: {exc}") from exc
        keys[str(jwk.get("kid", f"#{n}"))] = key
    if not keys:
        raise fail(where, "no key: a client needs at least one public key")
    return keys


def _default_alg(jwk: dict[str, Any]) -> str:
    return "ES384" if jwk["kty"] == "EC" else "RS384"


def _studies(entry: ClientEntry | UserEntry, network: Network | None,
             fail: Any) -> frozenset[str] | None:
    if entry.studies is None:
        return None
    ids: set[str] = set()
    for n, text in enumerate(entry.studies):
        if text.startswith("ResearchStudy/"):
            ids.add(text.removeprefix("ResearchStudy/"))
        elif "|" in text:
            system, _, value = text.partition("|")
            ids.add(study_id({"system": system, "value": value}))
        else:
            study = network.study_for(text) if network is not None else None
            if study is None:
                raise fail(f"studies.{n}", f"{text!r} is no study of studies.yaml (write "
                           "system|value or ResearchStudy/<id> for others)", ["studies", n])
            first = study.identifiers[0]
            ids.add(study_id({"system": first.system, "value": first.value}))
    return frozenset(ids)


def _sites(entry: ClientEntry | UserEntry, network: Network | None,
           fail: Any) -> frozenset[str] | None:
    if entry.sites is None:
        return None
    for n, site in enumerate(entry.sites):
        if network is not None and site not in network.sites:
            raise fail(f"sites.{n}", f"{site!r} is no loaded site (known: "
                       f"{', '.join(sorted(network.sites))})", ["sites", n])
    return frozenset(entry.sites)


def add_client(path: Path, entry: dict[str, Any]) -> None:
    """Append one client to a clients file (created when missing); ids stay unique."""
    data: dict[str, Any] = {"clients": []}
    if path.exists():
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {"clients": []}
    if any(c.get("id") == entry["id"] for c in data.get("clients") or []):
        raise ConfigError(f"{path}: client {entry['id']} already exists", file=str(path))
    data.setdefault("clients", []).append(entry)
    path.write_text(yaml.safe_dump(data, sort_keys=False, width=100), encoding="utf-8")
