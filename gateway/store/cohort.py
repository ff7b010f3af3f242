"""Study cohorts as ``Group`` resources, kept current by the hub store itself.

For every ResearchStudy the hub holds one ``Group`` (R4: ``type`` person, ``actual`` true)
whose members are the Patients enrolled in it:

* ``member.entity``: the ResearchSubject's ``individual``;
* ``member.period``: the ResearchSubject's ``period``;
* ``member.inactive``: true once the subject is ``off-study`` or ``withdrawn``.

Subjects that are not (or not yet) enrolled (``candidate``, ``eligible``, ``ineligible``,
``not-registered``, ``potential-candidate``, ``screening``) and deleted subjects are not
members. The study is linked twice: a ``characteristic`` (network code
``enrolled-in-study``, ``valueReference`` the ResearchStudy, ``exclude`` false) and the R4
``workflow-researchStudy`` extension (searchable as ``Group?research-study=``).

The one place that sees every ResearchStudy and ResearchSubject write of a hub store is the
store's own transaction (ingest in role ``all``, the projector at a hub, the FHIR API):
every write path notes the keys it touched (``Session.touched``) and, before the
commit, ``refresh_cohorts`` rewrites the Groups of the studies concerned in the same
transaction, as an ordinary ``put`` (a new version only when the content changed, with an
outbox row: a bus event like every resource). An edge store keeps no cohorts. The Group id
is ``sha256("Group|network|<study id>")``, like the mapping's network-wide ids.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from typing import Any

from sqlalchemy import select

from gateway.store import schema as s
from gateway.store.base import Resource
from gateway.store.content import loads
from gateway.store.session import COHORT_TYPES
from gateway.store.tx import SqlTransaction

__all__ = ["COHORT_TYPES", "group_id", "refresh_all_cohorts", "refresh_cohorts"]
STUDY_EXTENSION = "http://hl7.org/fhir/StructureDefinition/workflow-researchStudy"
COHORT_SYSTEM = "http://plagencell.example.org/fhir/CodeSystem/cohort"
ENROLLED_CODE = {"coding": [{"system": COHORT_SYSTEM, "code": "enrolled-in-study",
                             "display": "Enrolled in research study"}]}
ACTIVE = frozenset({"on-study", "on-study-intervention", "on-study-observation",
                    "follow-up", "pending-on-study"})
ENDED = frozenset({"off-study", "withdrawn"})
HEADERS = {"derived-from": "ResearchSubject"}  # bus headers of a cohort change
SOURCE = "urn:plagencell:cohort"  # meta.source: derived by the hub, not sent by a site

_r, _v, _ref = s.resource.c, s.resource_version.c, s.idx_reference.c


def group_id(study_id: str) -> str:
    """The cohort Group of a study: the same id on every hub, from the study id alone."""
    return hashlib.sha256(f"Group|network|{study_id}".encode()).hexdigest()


def refresh_cohorts(tx: SqlTransaction) -> int:
    """Rewrite the cohort Group of every study touched in ``tx``; returns how many changed."""
    keys, tx.session.cohort_keys = tx.session.cohort_keys, set()
    studies = sorted({study for key in keys for study in _studies_of(tx, key)})
    changed = 0
    for study in studies:  # in order: two writers take the locks in the same order
        # before reading the members: a concurrent writer of the same study commits
        # first, and its subjects are then seen here (PostgreSQL, read committed)
        tx.lock_key(f"Group/{group_id(study)}")
        group = cohort_group(study, _study(tx, study), _subjects(tx, study))
        if group is None:
            continue
        changed += tx.put_resource(group, source=SOURCE, headers=HEADERS).changed
    return changed


def refresh_all_cohorts(tx: SqlTransaction) -> int:
    """Every study's Group (at start-up: a database from before cohorts, or one an edge
    turned into a hub, gets them; afterwards this changes nothing)."""
    rows = tx.conn.execute(select(_r.res_id).where(_r.res_type == "ResearchStudy",
                                                   _r.deleted.is_(False)))
    tx.session.cohort_keys.update(("ResearchStudy", row.res_id) for row in rows)
    return refresh_cohorts(tx)


def cohort_group(study_id: str, study: Resource | None,
                 subjects: Iterable[Resource]) -> Resource | None:
    """The Group of ``study_id`` (None when the study is not known: no Group for it)."""
    if study is None:
        return None
    members = sorted((m for m in map(_member, subjects) if m is not None),
                     key=lambda m: m["entity"]["reference"])
    reference = {"reference": f"ResearchStudy/{study_id}"}
    group: Resource = {
        "resourceType": "Group", "id": group_id(study_id),
        "extension": [{"url": STUDY_EXTENSION, "valueReference": reference}],
        "active": True, "type": "person", "actual": True,
        "name": f"Cohort of {study.get('title') or study_id}",
        "quantity": len(members),
        "characteristic": [{"code": ENROLLED_CODE, "valueReference": reference,
                            "exclude": False}],
    }
    if members:
        group["member"] = members
    return group


def _member(subject: Resource) -> dict[str, Any] | None:
    status = subject.get("status")
    entity = (subject.get("individual") or {}).get("reference")
    if status not in ACTIVE | ENDED or not entity:
        return None
    member: dict[str, Any] = {"entity": {"reference": entity}}
    if subject.get("period"):
        member["period"] = subject["period"]
    member["inactive"] = status in ENDED
    return member


def _studies_of(tx: SqlTransaction, key: tuple[str, str]) -> list[str]:
    """The study of a touched key: the study itself, or a subject's study (its newest
    content in the history, so that a deleted subject still names it)."""
    rtype, rid = key
    if rtype == "ResearchStudy":
        return [rid]
    row = tx.conn.execute(
        select(_v.content).where(_v.res_type == rtype, _v.res_id == rid,
                                 _v.content.is_not(None))
        .order_by(_v.version_id.desc()).limit(1)).first()
    if row is None:
        return []
    reference = (loads(row.content).get("study") or {}).get("reference") or ""
    kind, _, study = reference.partition("/")
    return [study] if kind == "ResearchStudy" and study else []


def _study(tx: SqlTransaction, study_id: str) -> Resource | None:
    row = tx.conn.execute(select(_r.content).where(
        _r.res_type == "ResearchStudy", _r.res_id == study_id,
        _r.deleted.is_(False))).first()
    return loads(row.content) if row is not None and row.content is not None else None


def _subjects(tx: SqlTransaction, study_id: str) -> list[Resource]:
    """The live ResearchSubjects of a study (through the ``study`` reference index)."""
    ids = (select(_ref.res_id).where(
        _ref.res_type == "ResearchSubject", _ref.param == "study",
        _ref.target_type == "ResearchStudy", _ref.target_id == study_id))
    rows = tx.conn.execute(select(_r.content).where(
        _r.res_type == "ResearchSubject", _r.res_id.in_(ids), _r.deleted.is_(False))
        .order_by(_r.res_id))
    return [loads(row.content) for row in rows if row.content is not None]
