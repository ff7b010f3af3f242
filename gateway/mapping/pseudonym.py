"""The patient pseudonym: keyed HMAC-SHA256, network-wide, and the identifier link table.

Rule (issue 3, section 4): the pseudonym is HMAC(key, "CF|<codice fiscale>") when the PID
carries a codice fiscale (CX-5 type or CX-4 assigning authority from the site's
``identifiers`` rules, and shaped like a 16-character Italian fiscal code); otherwise a
pseudonym already linked to one of the PID's identifiers; otherwise
HMAC(key, "MRN|<authority>|<MRN>").

Link table: every (authority, value) CX seen in one PID becomes a link key
HMAC(key, "link|<authority>|<value>") → pseudonym. Keys and pseudonyms are hashes: the
table holds no identifier in clear. An identifier without an assigning authority is scoped
to the site ("site:<id>"), because a bare number means nothing outside its sender.

The key lives outside the mapping: ``load_or_create_key`` reads it from
``GATEWAY_PSEUDONYM_KEY_FILE`` or from ``<data dir>/pseudonym.key``, creating 32 random bytes
(mode 0600) on first run. The key itself is never logged.
"""

from __future__ import annotations

import logging
import os
import re
import secrets
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from gateway.adapters.site import Site
from gateway.errors import ConfigError
from gateway.hl7.parser import Composite
from gateway.mapping.context import MappingContext

log = logging.getLogger(__name__)

KEY_FILE_ENV = "GATEWAY_PSEUDONYM_KEY_FILE"
KEY_FILE_NAME = "pseudonym.key"
KEY_BYTES = 32
MIN_KEY_BYTES = 16
# 6 letters (surname, name), year (2), month letter, day (2, +40 for women), place
# (letter + 3), check letter; digits may be replaced by LMNPQRSTUV (omocodia).
FISCAL_CODE = re.compile(
    r"^[A-Z]{6}[0-9LMNPQRSTUV]{2}[ABCDEHLMPRST][0-9LMNPQRSTUV]{2}[A-Z][0-9LMNPQRSTUV]{3}[A-Z]$")
CF_AUTHORITY = "CF"


def load_or_create_key(data_dir: Path | str) -> bytes:
    """The pseudonym key: ``$GATEWAY_PSEUDONYM_KEY_FILE``, else ``<data_dir>/pseudonym.key``
    (created with 32 random bytes, mode 0600, on first run)."""
    configured = os.environ.get(KEY_FILE_ENV)
    if configured:
        return read_key(Path(configured))
    path = Path(data_dir) / KEY_FILE_NAME
    if path.exists():
        return read_key(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:  # another process created it first
        return read_key(path)
    with os.fdopen(fd, "wb") as out:
        out.write(secrets.token_bytes(KEY_BYTES))
    log.warning("created a new pseudonym key at %s: back it up; losing it splits every "
                "patient into a new pseudonym", path)
    return read_key(path)


def read_key(path: Path) -> bytes:
    try:
        key = path.read_bytes()
    except OSError as exc:
        raise ConfigError(f"pseudonym key file {path} cannot be read: {exc.strerror}",
                          file=str(path)) from exc
    if len(key) < MIN_KEY_BYTES:
        raise ConfigError(f"pseudonym key file {path} holds fewer than {MIN_KEY_BYTES} bytes",
                          file=str(path))
    return key


def is_fiscal_code(value: str) -> bool:
    return bool(FISCAL_CODE.match(value))


@dataclass(frozen=True, slots=True)
class Cx:
    """One patient identifier of a CX list, reduced to what the pseudonym needs."""

    value: str
    authority: str  # CX-4.1, else CX-4.2, else "site:<id>"
    type_code: str  # CX-5
    position: str  # e.g. "PID-3[2]", for the report
    fiscal_code: bool = False


@dataclass(slots=True)
class Resolution:
    """The pseudonym of one CX list, and what the link table learns from it."""

    pseudonym: str
    basis: str  # fiscal-code | link | mrn
    links: dict[str, str] = field(default_factory=dict)  # link key → pseudonym
    superseded: set[str] = field(default_factory=set)  # MRN pseudonyms now replaced
    conflicts: set[str] = field(default_factory=set)  # other patients the ids pointed to


def read_cx_list(ctx: MappingContext, reps: Sequence[Composite], where: str) -> list[Cx]:
    """CX repetitions (``where`` is e.g. "PID-3") → Cx, codice fiscale recognised."""
    out = []
    for n, rep in enumerate(reps, start=1):
        value = rep.c(1).strip()
        if not value:
            continue
        position = f"{where}[{n}]"
        authority = rep.c(4, 1).strip() or rep.c(4, 2).strip() or f"site:{ctx.site.id}"
        type_code = rep.c(5).strip().upper()
        declared = _declared_fiscal_code(ctx.site, authority, type_code)
        fiscal = declared and is_fiscal_code(value.upper().replace(" ", ""))
        if declared and not fiscal and type_code not in ("SS", "NN"):
            ctx.warn(position, f"{position}: declared as a codice fiscale but not shaped like "
                     "one; used as an ordinary identifier", code="value")
        if fiscal:
            value, authority = value.upper().replace(" ", ""), CF_AUTHORITY
        out.append(Cx(value, authority, type_code, position, fiscal))
    return out


def _declared_fiscal_code(site: Site, authority: str, type_code: str) -> bool:
    rules = site.identifiers
    return (type_code in {t.upper() for t in rules.fiscal_code_types}
            or authority.upper() in {a.upper() for a in rules.fiscal_code_authorities})


def link_key(ctx: MappingContext, cx: Cx) -> str:
    return ctx.pseudonym("link", cx.authority, cx.value)


def known_pseudonym(ctx: MappingContext, key: str) -> str | None:
    """A link learned earlier in this message, else from the node's link table."""
    return ctx.new_links.get(key) or ctx.lookup_link(key)


def pick_mrn(ids: Sequence[Cx], site: Site) -> Cx | None:
    """The MRN: a CX of one of ``site.identifiers.mrn_authorities``; else the first of type
    MR; else the first identifier that is not a codice fiscale."""
    ordinary = [cx for cx in ids if not cx.fiscal_code]
    wanted = {a.upper() for a in site.identifiers.mrn_authorities}
    for cx in ordinary:
        if cx.authority.upper() in wanted:
            return cx
    for cx in ordinary:
        if cx.type_code == "MR":
            return cx
    return ordinary[0] if ordinary else None


def resolve(ctx: MappingContext, ids: Sequence[Cx]) -> Resolution | None:
    """The pseudonym of a CX list (None when it holds no identifier at all)."""
    if not ids:
        return None
    keys = [link_key(ctx, cx) for cx in ids]
    known = {k: known_pseudonym(ctx, k) for k in keys}
    fiscal = next((cx for cx in ids if cx.fiscal_code), None)
    mrn = pick_mrn(ids, ctx.site)
    if fiscal is not None:
        result = Resolution(ctx.pseudonym("CF", fiscal.value), "fiscal-code")
    elif mrn is not None and known[link_key(ctx, mrn)]:
        result = Resolution(str(known[link_key(ctx, mrn)]), "link")
    elif any(known.values()):
        result = Resolution(next(str(p) for p in known.values() if p), "link")
    else:
        assert mrn is not None  # ids is non-empty and holds no codice fiscale
        result = Resolution(ctx.pseudonym("MRN", mrn.authority, mrn.value), "mrn")
    result.links = {k: result.pseudonym for k in keys}
    others = {p for p in known.values() if p and p != result.pseudonym}
    # Only a pseudonym made from one of these very identifiers (an MRN pseudonym, before
    # the codice fiscale was known) is superseded; any other is a different patient whose
    # identifier this PID reuses: a conflict, reported, never merged.
    if others:
        from_ids = {ctx.pseudonym("MRN", cx.authority, cx.value)
                    for cx in ids if not cx.fiscal_code}
        result.superseded = others & from_ids
        result.conflicts = others - from_ids
    return result


def learn(ctx: MappingContext, links: dict[str, str]) -> None:
    """Record links that the node does not know yet (or knows differently)."""
    for key, pseudonym in links.items():
        if ctx.lookup_link(key) != pseudonym or key in ctx.new_links:
            ctx.new_links[key] = pseudonym
