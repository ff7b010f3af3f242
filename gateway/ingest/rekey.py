"""Re-keying on replay: the results an earlier mapping of a message wrote under ids that
the current mapping no longer produces (data stored by a gateway version that derived ids
differently, or a site override that now picks another specimen identifier) are deleted,
so a replay leaves one current resource per result, never a twin.

The inbox record of a message keeps what it wrote (``Type/id/_history/n``). A resource of
that list that the replay does not write again is retired only when the version this
message wrote is still the current one: if another message (a corrected resend) wrote it
later, that message's own replay retires it.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable

from gateway.store.base import Change, Transaction

# what a message's results are made of; Patients, studies, subjects and Organizations are
# shared by many messages and keyed by identities that a code map does not touch
RESULT_TYPES = frozenset({"Observation", "Specimen", "ServiceRequest", "DiagnosticReport"})


def _parse(ref: str) -> tuple[str, str, int] | None:
    parts = ref.split("/")
    if len(parts) != 4 or parts[2] != "_history" or not parts[3].isdigit():
        return None
    return parts[0], parts[1], int(parts[3])


def stale(old_refs: Iterable[str],
          produced: Collection[tuple[str, str]]) -> list[tuple[str, str, int]]:
    """(type, id, version) of result resources in ``old_refs`` that the current mapping
    does not produce (``produced``: every (type, id) it made, written or not: a create-only
    stub that exists already is not written again, and is not stale)."""
    out = []
    for ref in old_refs:
        parsed = _parse(ref)
        if parsed and parsed[0] in RESULT_TYPES and parsed[:2] not in produced:
            out.append(parsed)
    return out


def retire(tx: Transaction, old_refs: Iterable[str], produced: Collection[tuple[str, str]],
           *, source: str, headers: dict[str, str]) -> list[Change]:
    """Delete the stale results whose current version is the one this message wrote."""
    deleted = []
    for rtype, rid, version in stale(old_refs, produced):
        current = tx.get(rtype, rid)
        if current is None or int(current.get("meta", {}).get("versionId", 0)) != version:
            continue
        deleted.append(tx.delete(rtype, rid, source=source, headers=headers))
    return deleted
