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
    """``visible`` for a column made per statement (a subquery's): through the resource
    row of that id, so that the rule itself is built once."""
    row = _ROW.c
    return exists(select(row.res_id).where(
        row.res_type == resource_type, row.res_id == id_column,
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
    """The ids of the visible live resources of one type, as a subquery."""
    r = s.resource.alias()
    return select(r.c.res_id).where(r.c.res_type == resource_type, r.c.deleted == false(),
                                    visible(restriction, resource_type, r.c.res_id))


def _link(source: str, param: str, target: str) -> tuple[Any, Any]:
    """A private alias of the reference index, narrowed to ``source.param → target``."""
    ref = s.idx_reference.alias()
    return ref.c, and_(ref.c.res_type == source, ref.c.param == param,
                       ref.c.target_type == target)


class _Rule:
    """The rule for one restriction in one statement.

    Per row it probes the reference index by primary key (``EXISTS`` correlated to the
    row's id, on the ``ix_reference_res`` / ``ix_reference_target`` indexes), so a read by
    id or a page of a search costs a few index lookups per row, whatever the size of the
    store. Only the two small sets it starts from, the visible ResearchStudy ids and the
    Organizations of the allowed sites, are common table expressions, computed once per
    statement."""

    def __init__(self, restriction: Restriction) -> None:
        self.studies = restriction.studies
        self.sites = restriction.sites
        self._sets: dict[str, Any] = {}

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

    def _set(self, name: str, build: Any) -> Any:
        """``IN`` operand: the named set, as a CTE built once for this rule."""
        if name not in self._sets:
            self._sets[name] = build().cte()
        return select(self._sets[name].c[0])

    # -- studies ---------------------------------------------------------------------------

    def _in_studies(self, rtype: str, id_column: Any) -> ColumnElement[bool]:
        assert self.studies is not None
        if rtype == "Organization":
            return true()
        if not self.studies:
            return false()
        if rtype == "ResearchStudy":
            return id_column.in_(self._set("studies", self._study_ids))  # type: ignore[no-any-return]
        if rtype == "ResearchSubject":
            return self._subject_in_studies(id_column)
        if rtype == "Patient":
            return self._enrolled(id_column)
        if rtype in TAGGED_TYPES:
            return self._tagged_or_enrolled(rtype, id_column)
        return self._all_targets_visible(id_column)

    def _study_ids(self) -> Select[Any]:
        """Live ResearchStudy ids named by id, identifier value or ``system|value``."""
        assert self.studies is not None
        r = s.resource.alias()
        t = s.idx_token.alias()
        plain = sorted(x for x in self.studies if "|" not in x)
        pairs = sorted(tuple(x.split("|", 1)) for x in self.studies if "|" in x)
        named = ([t.c.code.in_(plain)] if plain else []) + [
            and_(t.c.system == system, t.c.code == value) for system, value in pairs]
        by_identifier = select(t.c.res_id).where(t.c.res_type == "ResearchStudy",
                                                 t.c.param == "identifier", or_(*named))
        return select(r.c.res_id).where(
            r.c.res_type == "ResearchStudy", r.c.deleted == false(),
            or_(r.c.res_id.in_(plain), r.c.res_id.in_(by_identifier)) if plain
            else r.c.res_id.in_(by_identifier))

    def _subject_in_studies(self, subject_id: Any) -> ColumnElement[bool]:
        c, where = _link("ResearchSubject", "study", "ResearchStudy")
        return exists(select(c.res_id).where(
            where, c.res_id == subject_id,
            c.target_id.in_(self._set("studies", self._study_ids))))

    def _enrolled(self, patient_id: Any) -> ColumnElement[bool]:
        """A visible ResearchSubject names the patient as its ``individual``."""
        c, where = _link("ResearchSubject", "individual", "Patient")
        return exists(select(c.res_id).where(where, c.target_id == patient_id,
                                             self._subject_in_studies(c.res_id)))

    def _tagged_or_enrolled(self, rtype: str, id_column: Any) -> ColumnElement[bool]:
        """The study tag decides when there is one; otherwise the subject's enrolment."""
        tag, tag_where = _link(rtype, STUDY_TAG, "ResearchStudy")
        tagged_in = exists(select(tag.res_id).where(
            tag_where, tag.res_id == id_column,
            tag.target_id.in_(self._set("studies", self._study_ids))))
        any_tag = s.idx_reference.alias().c
        tagged = exists(select(any_tag.res_id).where(
            any_tag.res_type == rtype, any_tag.res_id == id_column,
            any_tag.param == STUDY_TAG))
        subject, subject_where = _link(rtype, "subject", "Patient")
        enrolled = exists(select(subject.res_id).where(
            subject_where, subject.res_id == id_column, self._enrolled(subject.target_id)))
        return or_(tagged_in, and_(~tagged, enrolled))

    def _all_targets_visible(self, id_column: Any) -> ColumnElement[bool]:
        """A Provenance with at least one target, all of them visible under the studies
        rule (a target given by URL only, or of a type no restricted client sees, or
        another Provenance, hides the Provenance)."""
        c = s.idx_reference.alias().c
        has_target = exists(select(c.res_id).where(
            c.res_type == "Provenance", c.res_id == id_column, c.param == "target"))
        h = s.idx_reference.alias().c
        studies_only = _Rule(Restriction(studies=self.studies))
        studies_only._sets = self._sets
        hidden_target = exists(select(h.res_id).where(
            h.res_type == "Provenance", h.res_id == id_column, h.param == "target",
            or_(h.target_type.is_(None), h.target_id.is_(None),
                not_(studies_only.visible_any(h.target_type, h.target_id,
                                              VISIBLE_TYPES - {"Provenance"})))))
        return and_(has_target, ~hidden_target)

    # -- sites -----------------------------------------------------------------------------

    def _site_organizations(self) -> Select[Any]:
        assert self.sites is not None
        t = s.idx_token.alias().c
        return select(t.res_id).where(t.res_type == "Organization", t.param == "identifier",
                                      t.system == SITE_SYSTEM, t.code.in_(sorted(self.sites)))

    def _sent_by_site(self, provenance_id: Any) -> ColumnElement[bool]:
        """The Provenance's ``agent`` is the Organization of an allowed site."""
        c, where = _link("Provenance", "agent", "Organization")
        return exists(select(c.res_id).where(
            where, c.res_id == provenance_id,
            c.target_id.in_(self._set("organizations", self._site_organizations))))

    def _in_sites(self, rtype: str, id_column: Any) -> ColumnElement[bool]:
        if rtype == "Organization":
            return true()
        if not self.sites:
            return false()
        if rtype == "Provenance":
            return self._sent_by_site(id_column)
        c, where = _link("Provenance", "target", rtype)
        return exists(select(c.res_id).where(where, c.target_id == id_column,
                                             self._sent_by_site(c.res_id)))


__all__ = ["is_visible", "visible", "visible_any", "visible_ids"]
