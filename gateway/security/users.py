"""People who use the web console (``/console``): the ``users:`` section of the clients file.

    users:
      - id: anna                              # the login name
        name: Anna Bianchi (integration team)
        password: "scrypt$32768$8$1$<salt>$<hash>"   # gateway users add anna --clients …
        oidc_subject: 5f1c…                   # optional: the ``sub`` of the OIDC issuer
        scopes: system/gateway.admin system/*.rs
        studies: [carcik-cd19]                # optional, as for a client
        sites: [hpg23]

A user logs in with the password (local account) or through the OpenID Connect issuer
(``--oidc-issuer``, ``--oidc-console-client-id``), whose ID token's ``sub`` must be a user's
``oidc_subject``. Either way the user's scopes and study/site restrictions apply exactly
as a client's do. Passwords are kept only as scrypt hashes (``hashlib.scrypt``, RFC 7914;
N=2^15, r=8, p=1, a random 16-byte salt).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, field_validator

from gateway.errors import ConfigError
from gateway.security.principal import Principal

SCRYPT_N, SCRYPT_R, SCRYPT_P = 2**15, 8, 1
_MAXMEM = 64 * 1024 * 1024


class UserEntry(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    id: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9._@-]{0,127}$")
    name: str
    password: str | None = Field(default=None, description="scrypt hash (gateway users add)")
    oidc_subject: str | None = None
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
        from gateway.security.clients import scope_error  # the clients' rule, one place

        problems = [p for p in map(scope_error, value) if p]
        if problems:
            raise ValueError("; ".join(problems))
        return value

    @field_validator("password")
    @classmethod
    def _hashed(cls, value: str | None) -> str | None:
        if value is not None and not value.startswith("scrypt$"):
            raise ValueError("not a password hash: set it with 'gateway users add' (a "
                             "password is never written in clear)")
        return value


@dataclass(frozen=True, slots=True)
class User:
    id: str
    name: str
    password: str | None
    oidc_subject: str | None
    scopes: frozenset[str]
    studies: frozenset[str] | None
    sites: frozenset[str] | None

    def principal(self) -> Principal:
        """The caller a console request runs as (its audit agent: ``user:<id>``)."""
        return Principal(f"user:{self.id}", self.scopes, self.studies, self.sites,
                         extra={"user": self.id})


def hash_password(password: str) -> str:
    salt = secrets.token_bytes(16)
    digest = hashlib.scrypt(password.encode(), salt=salt, n=SCRYPT_N, r=SCRYPT_R,
                            p=SCRYPT_P, maxmem=_MAXMEM)
    return "$".join(["scrypt", str(SCRYPT_N), str(SCRYPT_R), str(SCRYPT_P),
                     _b64(salt), _b64(digest)])


def verify_password(password: str, hashed: str) -> bool:
    try:
        kind, n, r, p, salt, digest = hashed.split("$")
        if kind != "scrypt":
            return False
        mine = hashlib.scrypt(password.encode(), salt=_unb64(salt), n=int(n), r=int(r),
                              p=int(p), maxmem=_MAXMEM)
    except (ValueError, TypeError):
        return False
    return hmac.compare_digest(mine, _unb64(digest))


# a password check costs the same whether or not the user exists (no user probing)
_DUMMY = "scrypt$32768$8$1$AAAAAAAAAAAAAAAAAAAAAA$AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"


def check_login(users: dict[str, User], name: str, password: str) -> User | None:
    user = users.get(name)
    hashed = user.password if user is not None and user.password else _DUMMY
    ok = verify_password(password, hashed)
    return user if ok and user is not None and user.password else None


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def load_users(path: Path, entries: list[UserEntry], resolve_studies: Any,
               resolve_sites: Any) -> dict[str, User]:
    """The users of a clients file, their studies and sites resolved like a client's."""
    out: dict[str, User] = {}
    for entry in entries:
        if entry.id in out:
            raise ConfigError(f"{path}: users: user {entry.id} is defined twice",
                              file=str(path), field="users")
        out[entry.id] = User(entry.id, entry.name, entry.password, entry.oidc_subject,
                             frozenset(entry.scopes), resolve_studies(entry),
                             resolve_sites(entry))
    return out


def add_user(path: Path, entry: dict[str, Any]) -> None:
    """Add or replace one user of a clients file (created when missing)."""
    data: dict[str, Any] = {"clients": []}
    if path.exists():
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {"clients": []}
    UserEntry.model_validate(entry)
    users = [u for u in data.get("users") or [] if u.get("id") != entry["id"]]
    data["users"] = [*users, entry]
    path.write_text(yaml.safe_dump(data, sort_keys=False, width=100), encoding="utf-8")
