"""Key pairs and JWKs: the clients' keys (``gateway clients new``) and the gateway's own
token-signing key (``<data dir>/token-signing-key.pem``, 0600, made on first start).

All cryptography is ``cryptography`` and PyJWT; this module only generates, writes and
names keys. A ``kid`` is the RFC 7638 JWK thumbprint (SHA-256 over the required members).
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from jwt.algorithms import ECAlgorithm, RSAAlgorithm

from gateway.errors import ConfigError

ALGORITHMS = ("ES384", "RS384")
SIGNING_KEY_FILE = "token-signing-key.pem"
PrivateKey = ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey
_REQUIRED = {"EC": ("crv", "kty", "x", "y"), "RSA": ("e", "kty", "n")}


def generate(alg: str = "ES384") -> PrivateKey:
    if alg == "ES384":
        return ec.generate_private_key(ec.SECP384R1())
    if alg == "RS384":
        return rsa.generate_private_key(public_exponent=65537, key_size=3072)
    raise ConfigError(f"--alg must be one of {', '.join(ALGORITHMS)}, not {alg!r}")


def write_private(key: PrivateKey, path: Path) -> None:
    """PEM (PKCS#8, unencrypted) readable by its owner only (0600 from creation on)."""
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                            serialization.NoEncryption())
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as out:
        out.write(pem)


def read_private(path: Path) -> PrivateKey:
    try:
        key = serialization.load_pem_private_key(path.read_bytes(), password=None)
    except (OSError, ValueError, TypeError) as exc:
        raise ConfigError(f"{path}: not a readable PEM private key ({exc})",
                          file=str(path)) from exc
    if not isinstance(key, ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey):
        raise ConfigError(f"{path}: only EC (ES384) and RSA (RS384) keys are supported",
                          file=str(path))
    return key


def algorithm_of(key: Any) -> str:
    return "ES384" if isinstance(key, ec.EllipticCurvePrivateKey | ec.EllipticCurvePublicKey) \
        else "RS384"


def thumbprint(jwk: dict[str, Any]) -> str:
    """RFC 7638 thumbprint of a public JWK, base64url without padding."""
    members = {k: jwk[k] for k in _REQUIRED[jwk["kty"]]}
    digest = hashlib.sha256(json.dumps(members, separators=(",", ":"),
                                       sort_keys=True).encode()).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


def public_jwk(key: PrivateKey) -> dict[str, Any]:
    """The public half as a JWK with ``kid`` (thumbprint), ``alg`` and ``use: sig``."""
    public = key.public_key()
    if isinstance(public, ec.EllipticCurvePublicKey):
        jwk: dict[str, Any] = ECAlgorithm.to_jwk(public, as_dict=True)
    else:
        jwk = RSAAlgorithm.to_jwk(public, as_dict=True)
    return {**jwk, "kid": thumbprint(jwk), "alg": algorithm_of(key), "use": "sig"}


def signing_key(data_dir: Path) -> PrivateKey:
    """The gateway's own ES384 key for access tokens; generated (0600) on first use."""
    path = data_dir / SIGNING_KEY_FILE
    if not path.exists():
        try:
            write_private(generate("ES384"), path)
        except FileExistsError:
            pass  # another process made it first
    if path.stat().st_mode & 0o077:
        raise ConfigError(f"{path}: the token-signing key must be readable by its owner "
                          "only (chmod 600)", file=str(path))
    return read_private(path)
