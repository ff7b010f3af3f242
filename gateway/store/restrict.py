"""A ``Restriction`` (``gateway.security.access``) as SQL: which rows a restricted client sees.

``visible(restriction, type, id_column)`` is a condition on a column of resource ids of
one type; ``visible_any`` the same over a column of types. Both are ``EXISTS`` probes of
the search index correlated to ``id_column`` (see ``_Rule``), on private aliases of the
tables, so they can be added to any query of the store without being correlated to its
own tables by accident. Only live resources have index rows: a deleted resource is never
visible.

The rule is written down in ``gateway.security.access`` and docs/security.md.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import (
    ColumnElement,
    Connection,
    Select,
    and_,
    exists,
    false,
    not_,
    or_,
    select,
    true,
)

from gateway.security.access import REFERENCE_TYPES, SITE_SYSTEM, STUDY_TYPES, Restriction
from gateway.store import schema as s

STUDY_TAG = "research-study"  # the search parameter of the workflow-researchStudy extension
COHORT_SOURCE = "urn:plagencell:cohort"  # meta.source of the cohort Groups (store.cohort)
TAGGED_TYPES = ("Observation", "Specimen")
VISIBLE_TYPES = REFERENCE_TYPES | STUDY_TYPES


def visible(restriction: Restriction, resource_type: str, id_column: Any
            ) -> ColumnElement[bool]:
    """The rows of ``resource_type`` whose id (``id_column``) the restriction lets through.
    Built once per (restriction, type, column): building it costs milliseconds, and the
    columns the store passes are those of its tables, the same objects every time (for a
    column made per statement, use ``visible_row``)."""
    key = (restriction, resource_type, id(id_column))
    hit = _BUILT.get(key)
    if hit is not None and hit[0] is id_column:
        return hit[1]  # type: ignore[no-any-return]
    condition = _Rule(restriction).visible(resource_type, id_column)
    _remember(key, id_column, condition)
    return condition


def visible_row(restriction: Restriction, resource_type: str, id_column: Any
                ) -> ColumnElement[bool]:
    """``visible`` for a column made per statement (a subquery's): through the live
    resource row of that id, so that the rule itself is built once."""
    row = _ROW.c
    return exists(select(row.res_id).where(
        row.res_type == resource_type, row.res_id == id_column, row.deleted == false(),
        visible(restriction, resource_type, row.res_id)))


def visible_any(restriction: Restriction, type_column: Any, id_column: Any
                ) -> ColumnElement[bool]:
    """``visible`` over rows of any type (the history of the whole system, includes)."""
    key = (restriction, None, id(type_column), id(id_column))
    hit = _BUILT.get(key)
    if hit is not None and hit[0] is id_column:
        return hit[1]  # type: ignore[no-any-return]
    condition = _Rule(restriction).visible_any(type_column, id_column, VISIBLE_TYPES)
    _remember(key, id_column, condition, type_column)
    return condition


_ROW = s.resource.alias("visible_row")
_IDS = s.resource.alias("visible_ids")
_BUILT: dict[tuple[Any, ...], tuple[Any, ...]] = {}
_BUILT_MAX = 1024  # (restriction, type, column) triples; a few clients × 7 types × 5 columns


def _remember(key: tuple[Any, ...], column: Any, condition: Any, *keep: Any) -> None:
    """Keep the columns alive with the entry, so that their ``id`` stays theirs."""
    if len(_BUILT) >= _BUILT_MAX:
        _BUILT.clear()
    _BUILT[key] = (column, condition, *keep)


def is_visible(conn: Connection, restriction: Restriction, resource_type: str,
               id: str) -> bool:
    """Whether one live resource is visible (a missing or deleted one is not)."""
    r = s.resource.c
    query = select(r.res_id).where(r.res_type == resource_type, r.res_id == id,
                                   r.deleted == false(),
                                   visible(restriction, resource_type, r.res_id))
    return conn.execute(query).first() is not None


def visible_ids(restriction: Restriction, resource_type: str) -> Select[Any]:
    """The ids of the visible live resources of one type, as a subquery (for callers that
    select ids first, e.g. an export that pages through a type)."""
    r = _IDS.c
    return select(r.res_id).where(r.res_type == resource_type, r.deleted == false(),
                                  visible(restriction, resource_type, r.res_id))


def candidates(restriction: Restriction, resource_type: str) -> Select[Any] | None:
    """A superset of the visible ids of a type, read from the index by study (``None``
    where there is none to offer: no studies restriction, or a type whose visible rows are
    not found that way). A search with no selective filter of its own walks these instead
    of the whole type when there are few: a small study in a large store."""
    studies = restriction.studies
    if not studies or resource_type not in TAGGED_TYPES:
        return None  # Patients, subjects, studies: few enough to walk
    subjects = _Link("ResearchSubject", "study", "ResearchStudy")
    in_studies = select(subjects.c.res_id).where(
        subjects.where, _named_in(subjects.c.target_id, studies))
    individual = _Link("ResearchSubject", "individual", "Patient")
    patients = select(individual.c.target_id).where(
        individual.where, individual.c.res_id.in_(in_studies))
    tag = _Link(resource_type, STUDY_TAG, "ResearchStudy")
    tagged_in = select(tag.c.res_id).where(tag.where, _named_in(tag.c.target_id, studies))
    any_tag = s.idx_reference.alias().c
    tagged = select(any_tag.res_id).where(any_tag.res_type == resource_type,
                                          any_tag.param == STUDY_TAG)
    subject = _Link(resource_type, "subject", "Patient")
    enrolled = select(subject.c.res_id).where(
        subject.where, subject.c.target_id.in_(patients), subject.c.res_id.not_in(tagged))
    either = tagged_in.union_all(enrolled).subquery()  # disjoint: tagged, untagged
    return select(either.c.res_id)


def _named_in(column: Any, studies: frozenset[str]) -> ColumnElement[bool]:
    """``column`` holds the id of a study named by id, identifier value or
    ``system|value`` (as a set condition, for the index on ``column``)."""
    plain = sorted(x for x in studies if "|" not in x)
    pairs = sorted(tuple(x.split("|", 1)) for x in studies if "|" in x)
    t = s.idx_token.alias().c
    named = ([t.code.in_(plain)] if plain else []) + [
        and_(t.system == system, t.code == value) for system, value in pairs]
    by_identifier = select(t.res_id).where(t.res_type == "ResearchStudy",
                                           t.param == "identifier", or_(*named))
    return or_(column.in_(plain), column.in_(by_identifier)) if plain \
        else column.in_(by_identifier)


class _Link:
    """A private alias of the reference index, narrowed to ``source.param → target``."""

    def __init__(self, source: str, param: str, target: str) -> None:
        self.table = s.idx_reference.alias()
        self.c = self.table.c
        self.where = and_(self.c.res_type == source, self.c.param == param,
                          self.c.target_type == target)


def _probe(query: Select[Any]) -> ColumnElement[bool]:
    """``EXISTS`` checked row by row: ``OFFSET 0`` keeps PostgreSQL from turning it into a
    hashed set of every match (which it estimated cheaper, and which made a read by id of
    a restricted client take the time of hashing a whole study); SQLite checks EXISTS row
    by row anyway."""
    return exists(query.offset(0))


class _Rule:
    """The rule for one restriction, as ``EXISTS`` probes correlated to the row's id: each
    walks the reference index by key (``ix_reference_res``, ``ix_reference_target``; a
    path such as Observation → subject → ResearchSubject.individual → study is one join
    in one probe, which also keeps the statement flat enough for SQLite's parser). A
    read by id or a page of a search costs a few index lookups per row, whatever the size
    of the store. Nothing is computed as a set first: a set (of a study's tagged
    Observations, say) would be as large as the study."""

    def __init__(self, restriction: Restriction) -> None:
        self.studies = restriction.studies
        self.sites = restriction.sites

    def visible(self, rtype: str, id_column: Any) -> ColumnElement[bool]:
        if rtype not in VISIBLE_TYPES:
            return false()
        terms = []
        if self.studies is not None:
            terms.append(self._in_studies(rtype, id_column))
        if self.sites is not None:
            terms.append(self._in_sites(rtype, id_column))
        return and_(*terms)

    def visible_any(self, type_column: Any, id_column: Any, types: frozenset[str]
                    ) -> ColumnElement[bool]:
        return or_(*(and_(type_column == rtype, self.visible(rtype, id_column))
                     for rtype in sorted(types)))

    # -- studies ---------------------------------------------------------------------------

    def _in_studies(self, rtype: str, id_column: Any) -> ColumnElement[bool]:
        assert self.studies is not None
        if rtype == "Organization":
            return true()
        if not self.studies:
            return false()
        if rtype == "ResearchStudy":
            r = s.resource.alias().c
            live = _probe(select(r.res_id).where(r.res_type == "ResearchStudy",
                                                 r.res_id == id_column, r.deleted == false()))
            return and_(self._study_named(id_column), live)
        if rtype == "ResearchSubject":
            link = _Link("ResearchSubject", "study", "ResearchStudy")
            return _probe(select(link.c.res_id).where(
                link.where, link.c.res_id == id_column, self._study_named(link.c.target_id)))
        if rtype == "Patient":
            return self._enrolled(id_column)
        if rtype == "Group":
            return self._cohort_of_visible_study(id_column)
        if rtype in TAGGED_TYPES:
            return self._tagged_or_enrolled(rtype, id_column)
        return self._all_targets_visible(id_column)

    def _study_named(self, study_id: Any) -> ColumnElement[bool]:
        """The ResearchStudy is named by id, identifier value or ``system|value``."""
        assert self.studies is not None
        plain = sorted(x for x in self.studies if "|" not in x)
        pairs = sorted(tuple(x.split("|", 1)) for x in self.studies if "|" in x)
        t = s.idx_token.alias().c
        named = ([t.code.in_(plain)] if plain else []) + [
            and_(t.system == system, t.code == value) for system, value in pairs]
        by_identifier = _probe(select(t.res_id).where(
            t.res_type == "ResearchStudy", t.res_id == study_id, t.param == "identifier",
            or_(*named)))
        return or_(study_id.in_(plain), by_identifier) if plain else by_identifier

    def _enrolment(self) -> tuple[_Link, Any]:
        """ResearchSubject.individual joined to the same subject's study."""
        individual = _Link("ResearchSubject", "individual", "Patient")
        study = _Link("ResearchSubject", "study", "ResearchStudy")
        joined = individual.table.join(study.table, and_(
            study.where, study.c.res_id == individual.c.res_id))
        return individual, (joined, and_(individual.where, self._study_named(study.c.target_id)))

    def _enrolled(self, patient_id: Any) -> ColumnElement[bool]:
        """A visible ResearchSubject names the patient as its ``individual``."""
        individual, (joined, where) = self._enrolment()
        return _probe(select(individual.c.res_id).select_from(joined).where(
            where, individual.c.target_id == patient_id))

    def _tagged_or_enrolled(self, rtype: str, id_column: Any) -> ColumnElement[bool]:
        """The study tag decides when there is one; otherwise the subject's enrolment."""
        tag = _Link(rtype, STUDY_TAG, "ResearchStudy")
        tagged_in = _probe(select(tag.c.res_id).where(
            tag.where, tag.c.res_id == id_column, self._study_named(tag.c.target_id)))
        any_tag = s.idx_reference.alias().c
        tagged = _probe(select(any_tag.res_id).where(
            any_tag.res_type == rtype, any_tag.res_id == id_column,
            any_tag.param == STUDY_TAG))
        subject = _Link(rtype, "subject", "Patient")
        individual, (joined, where) = self._enrolment()
        enrolled = _probe(select(subject.c.res_id).select_from(
            subject.table.join(joined, individual.c.target_id == subject.c.target_id)).where(
            subject.where, subject.c.res_id == id_column, where))
        return or_(tagged_in, and_(~tagged, enrolled))

    def _cohort_of_visible_study(self, id_column: Any) -> ColumnElement[bool]:
        """A study's cohort Group (``meta.source`` the hub's cohort source, which no client
        may write): its members are the study's subjects, all visible with the study. Any
        other Group (a list a client wrote) is never visible to a restricted client."""
        u = s.idx_uri.alias().c
        cohort = _probe(select(u.res_id).where(
            u.res_type == "Group", u.res_id == id_column, u.param == "_source",
            u.value == COHORT_SOURCE))
        link = _Link("Group", STUDY_TAG, "ResearchStudy")
        of_study = _probe(select(link.c.res_id).where(
            link.where, link.c.res_id == id_column, self._study_named(link.c.target_id)))
        return and_(cohort, of_study)

    def _all_targets_visible(self, id_column: Any) -> ColumnElement[bool]:
        """A Provenance with at least one target, all of them visible under the studies
        rule (a target given by URL only, or of a type no restricted client sees, or
        another Provenance, hides the Provenance)."""
        c = s.idx_reference.alias().c
        has_target = _probe(select(c.res_id).where(
            c.res_type == "Provenance", c.res_id == id_column, c.param == "target"))
        h = s.idx_reference.alias().c
        studies_only = _Rule(Restriction(studies=self.studies))
        hidden_target = _probe(select(h.res_id).where(
            h.res_type == "Provenance", h.res_id == id_column, h.param == "target",
            or_(h.target_type.is_(None), h.target_id.is_(None),
                not_(studies_only.visible_any(h.target_type, h.target_id,
                                              VISIBLE_TYPES - {"Provenance"})))))
        return and_(has_target, ~hidden_target)

    # -- sites -----------------------------------------------------------------------------

    def _site_agent(self) -> tuple[_Link, Any, Any]:
        """Provenance.agent joined to the site identifier of its Organization."""
        assert self.sites is not None
        agent = _Link("Provenance", "agent", "Organization")
        token = s.idx_token.alias()
        t = token.c
        joined = agent.table.join(token, and_(
            t.res_type == "Organization", t.res_id == agent.c.target_id,
            t.param == "identifier", t.system == SITE_SYSTEM,
            t.code.in_(sorted(self.sites))))
        return agent, joined, agent.where

    def _in_sites(self, rtype: str, id_column: Any) -> ColumnElement[bool]:
        """Named as a target by a Provenance whose agent is an allowed site (for a
        Provenance: its own agent)."""
        if rtype == "Organization":
            return true()
        if not self.sites:
            return false()
        agent, joined, where = self._site_agent()
        if rtype == "Provenance":
            return _probe(select(agent.c.res_id).select_from(joined).where(
                where, agent.c.res_id == id_column))
        target = _Link("Provenance", "target", rtype)
        return _probe(select(target.c.res_id).select_from(
            target.table.join(joined, agent.c.res_id == target.c.res_id)).where(
            target.where, where, target.c.target_id == id_column))


__all__ = ["candidates", "is_visible", "visible", "visible_any", "visible_ids"]
