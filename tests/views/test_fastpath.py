"""The compiled FHIRPath closures (gateway/views/fastpath.py) against fhirpathpy: the same
expression on the same resources gives the same collection (values and, for nodes, the
type path), or the closures hand over (``Unsure``) and the library answers.

Resources are generated (hypothesis): Observations with every element the supported
forms navigate, choice elements of several types, references of several shapes,
extensions, components. Not generated: primitive ``_x`` siblings, on which the closures
follow FHIRPath and the library does not (it adds the extension as a node of its own:
see the last test)."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest
from fhirpathpy.engine.nodes import ResourceNode
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gateway.views.fastpath import Unsure, as_library, focus_items
from gateway.views.fhirpath import compile_path, plain

STUDY = "http://hl7.org/fhir/StructureDefinition/workflow-researchStudy"
URLS = [STUDY, "http://example.org/other"]

words = st.sampled_from(["a", "b", "final", "x y", "", "=1+2", "1000-0"])
numbers = st.one_of(st.integers(-5, 100), st.sampled_from([0.1, 4.5, 13.44, -2.0, 1e3]))
references = st.sampled_from(["Patient/p1", "Group/g1", "p2", "Patient/p3/_history/2",
                              "http://x.org/fhir/Patient/p4", "ResearchStudy/s1", ""])
coding = st.fixed_dictionaries({}, optional={"system": st.sampled_from(["http://loinc.org",
                                                                        "urn:x"]),
                                             "code": words, "display": words})
concept = st.fixed_dictionaries({}, optional={"coding": st.lists(coding, max_size=3),
                                              "text": words})
quantity = st.fixed_dictionaries({}, optional={"value": numbers, "unit": words,
                                               "system": st.just("http://unitsofmeasure.org"),
                                               "code": st.sampled_from(["mg/L", "%"])})
reference = st.fixed_dictionaries({}, optional={"reference": references, "display": words})


def choice(prefix: str, kinds: dict[str, Any]) -> Any:
    return st.one_of(st.just({}), *(st.builds(lambda v, k=k: {f"{prefix}{k}": v}, s)
                                    for k, s in kinds.items()))


value = choice("value", {"Quantity": quantity, "String": words, "Integer": st.integers(0, 9),
                         "Boolean": st.booleans(), "CodeableConcept": concept,
                         "DateTime": st.just("2026-01-02")})
effective = choice("effective", {"DateTime": st.sampled_from(["2026-01-02",
                                                              "2023-01-01T00:00:00+01:00"]),
                                 "Period": st.just({"start": "2026-01-01"})})
extension = st.builds(lambda url, v: {"url": url, **v}, st.sampled_from(URLS),
                      choice("value", {"Reference": reference, "String": words}))
component = st.builds(lambda code, v: {"code": code, **v}, concept, value)


@st.composite
def observations(draw: Any) -> dict[str, Any]:
    resource: dict[str, Any] = {"resourceType": "Observation"}
    optional = {"id": st.sampled_from(["o1", "o2"]), "status": words, "code": concept,
                "subject": reference, "specimen": reference,
                "extension": st.lists(extension, max_size=3),
                "component": st.lists(component, max_size=3),
                "interpretation": st.lists(concept, max_size=2),
                "note": st.lists(st.fixed_dictionaries({"text": words}), max_size=2)}
    for key, strategy in optional.items():
        if draw(st.booleans()):
            resource[key] = draw(strategy)
    resource.update(draw(value))
    resource.update(draw(effective))
    return resource


CHAINS = ["id", "status", "code", "code.coding", "code.coding.code", "code.text",
          "subject", "subject.reference", "value", "value.value", "valueQuantity.value",
          "component", "component.code.text", "component.value", "extension",
          "extension.value", "interpretation.coding.system", "note.text", "effective",
          "effective.start", "$this", "code.coding[0].code", "component[1].value"]
SUFFIXES = ["", ".first()", ".exists()", ".empty()", ".not()", ".ofType(Quantity)",
            ".ofType(string)", ".ofType(dateTime)", ".ofType(integer)", ".ofType(boolean)",
            ".ofType(CodeableConcept)", ".ofType(Period)", ".ofType(FHIR.Quantity)",
            ".ofType(System.String)", ".join('|')", ".join()", ".getReferenceKey()",
            ".getReferenceKey(Patient)", ".getResourceKey()", ".first().exists()",
            ".ofType(Quantity).value", ".where(code = 'a')", ".where(value > 3).exists()",
            ".exists(text = 'a')", ".where(system = 'http://loinc.org').code.first()",
            ".startsWith('1')", ".endsWith(%label)", ".first().startsWith('')",
            ".where(code.startsWith('10')).exists()", ".join(%sep)", ".join(%limit)",
            ".extension(%url).exists()", ".startsWith(%limit)"]
PREDICATES = ["status = 'final'", "status != 'final'", "value.value > 3",
              "value.ofType(Quantity).value <= 13.44", "value.value >= -2",
              "value.value = 4.5", "value = true", "code.coding.code = '1000-0'",
              "%limit > 3", "%label = 'a'", "%rowIndex = 0", "id = 'o1'",
              "extension('" + STUDY + "').exists()", "effective.ofType(dateTime) < '2025'",
              "'a' = 'a'", "1 < 2", "-1 < 0", "{}.exists()", "true", "status.empty()"]
OPERATORS = ["and", "or", "xor", "implies"]
EXPRESSIONS = (
    [chain + suffix for chain in CHAINS for suffix in SUFFIXES]
    + [f"({a}) {op} ({b})" for a in PREDICATES for op in OPERATORS for b in PREDICATES[:6]]
    + PREDICATES
    + [f"extension('{url}').value.ofType(Reference).getReferenceKey(ResearchStudy)"
       for url in URLS]
    + ["extension(%url).value.ofType(Reference).getReferenceKey(ResearchStudy).first()",
       "code.coding.where(system = %url and code.startsWith('1000')).exists()",
       "extension('" + STUDY + "').value", "subject.getReferenceKey(Group)",
       "component.where(code.text = 'a').value.ofType(Quantity).value"]
)
VARIABLES = {"limit": 4, "label": "a", "rowIndex": 0, "url": STUDY, "sep": "|"}
COMPILED = [compile_path(text, {"limit", "label", "url", "sep"}) for text in EXPRESSIONS]


def _same(items: list[Any]) -> list[tuple[str, Any, Any]]:
    """A collection as comparable data: the kind, the JSON value, the node's type path."""
    out = []
    for item in items:
        if isinstance(item, ResourceNode):
            out.append(("node", _typed(plain(item)), item.path))
        else:
            out.append(("value", _typed(plain(item)), None))
    return out


def _typed(value: Any) -> Any:
    return (type(value).__name__, value)


def test_every_supported_form_is_compiled() -> None:
    assert [p.text for p in COMPILED if p.fast is None] == []


def _compare(path: Any, node: Any) -> bool:
    """True if the closures answered (they must agree with the library)."""
    try:
        fast = as_library(path.fast(focus_items(node), VARIABLES))
    except Unsure:
        return False
    try:
        slow = path.slow(node, VARIABLES)
    except Exception as exc:  # noqa: BLE001 (the library's own error classes vary)
        pytest.fail(f"{path.text}: the library fails ({exc!r}), the closures gave {fast}")
    assert _same(fast) == _same(slow), path.text
    assert path.values(node, VARIABLES) == [plain(v) for v in slow], path.text
    return True


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(observations())
def test_the_closures_agree_with_fhirpathpy_on_a_resource(resource: dict[str, Any]) -> None:
    answered = sum(_compare(path, resource) for path in COMPILED)
    assert answered >= len(COMPILED) // 2  # the fast path is the common case


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(observations())
def test_the_closures_agree_with_fhirpathpy_on_a_foreach_focus(
        resource: dict[str, Any]) -> None:
    for each in ("component", "code.coding", "extension", "value.ofType(Quantity)"):
        for focus in compile_path(each)(resource, VARIABLES):
            for path in COMPILED:
                _compare(path, focus)


def test_a_decimal_constant_and_number_literal_compare_as_the_library_does() -> None:
    path = compile_path("value.value > %limit", {"limit"})
    resource = {"resourceType": "Observation", "valueQuantity": {"value": 0.1}}
    for limit in (Decimal("0.1"), Decimal("0.05"), 0):
        assert path.values(resource, {"limit": limit}) == \
            [plain(v) for v in path.slow(resource, {"limit": limit})]


def test_data_the_closures_are_unsure_of_goes_to_the_library() -> None:
    path = compile_path("value = 4.5")  # a Quantity: the library's UCUM comparison
    resource = {"resourceType": "Observation", "valueQuantity": {"value": 4.5}}
    with pytest.raises(Unsure):
        path.fast(focus_items(resource), {})
    assert path(resource, {}) == path.slow(resource, {})


def test_a_primitive_extension_is_not_a_node_of_its_own() -> None:
    """FHIRPath: ``_status`` holds the id and extensions of ``status``; the library adds
    it to ``status`` as a second node, the closures do not."""
    resource = {"resourceType": "Observation", "status": "final",
                "_status": {"extension": [{"url": "u", "valueString": "x"}]}}
    path = compile_path("status.join('|')")
    assert path.values(resource, {}) == ["final"]
    assert path.values({"resourceType": "Observation",
                        "_status": {"extension": [{"url": "u"}]}}, {}) == []
