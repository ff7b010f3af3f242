"""The migrated schema, the parameter registry, and error translation."""

from __future__ import annotations

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

from gateway.errors import StoreError
from gateway.store.schema import metadata
from gateway.store.search.params import search_parameters
from gateway.store.sql import SqlStore

# the R4 (4.0.1) search parameters of each resource type, from the spec's search pages
R4 = {
    "Patient": "active address address-city address-country address-postalcode address-state "
               "address-use birthdate death-date deceased email family gender "
               "general-practitioner given identifier language link name organization phone "
               "phonetic telecom",
    "Organization": "active address address-city address-country address-postalcode "
                    "address-state address-use endpoint identifier name partof phonetic type",
    "ResearchStudy": "category condition date focus identifier keyword location partof "
                     "principalinvestigator protocol site sponsor status title",
    "ResearchSubject": "date identifier individual patient status study",
    "Specimen": "accession bodysite collected collector container container-id identifier "
                "parent patient status subject type",
    "Provenance": "agent agent-role agent-type entity location patient recorded "
                  "signature-type target when",
    "Observation": "based-on category code code-value-concept code-value-date "
                   "code-value-quantity code-value-string combo-code combo-code-value-concept "
                   "combo-code-value-quantity combo-data-absent-reason combo-value-concept "
                   "combo-value-quantity component-code component-code-value-concept "
                   "component-code-value-quantity component-data-absent-reason "
                   "component-value-concept component-value-quantity data-absent-reason date "
                   "derived-from device encounter focus has-member identifier method part-of "
                   "patient performer specimen status subject value-concept value-date "
                   "value-quantity value-string",
}
COMMON = {"_id", "_lastUpdated", "_tag", "_security", "_profile", "_source"}


@pytest.mark.parametrize("rtype", sorted(R4))
def test_the_registry_has_every_r4_parameter_and_the_common_ones(rtype: str) -> None:
    names = {d.name for d in search_parameters(rtype)}
    assert set(R4[rtype].split()) | COMMON <= names
    for definition in search_parameters(rtype):
        assert definition.expression and definition.description and definition.url
        assert definition.base == (rtype,)
        if definition.type == "reference":
            assert definition.targets


def test_research_study_is_searchable_on_observation_and_specimen() -> None:
    for rtype in ("Observation", "Specimen"):
        (param,) = [d for d in search_parameters(rtype) if d.name == "research-study"]
        assert param.type == "reference" and param.targets == ("ResearchStudy",)
        assert "workflow-researchStudy" in param.expression


def test_the_migrated_schema_matches_the_table_definitions(store: SqlStore) -> None:
    with store.engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn), metadata)
    assert diff == []


def test_an_unreachable_database_is_a_store_error(tmp_path: object) -> None:
    store = SqlStore("postgresql://nobody@127.0.0.1:1/none")
    with pytest.raises(StoreError) as info:
        store.read("Patient", "x")
    assert info.value.retriable
    store.close()
    with pytest.raises(StoreError):
        SqlStore("mysql://x/y")
