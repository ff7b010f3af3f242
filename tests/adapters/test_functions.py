"""The condition language of site-file overrides and the registry of named functions."""

from __future__ import annotations

import pytest

from gateway.adapters.functions import FUNCTIONS, apply_override, condition_holds, parse_condition
from gateway.hl7.parser import parse

# OBX-3: local code padded with zeros (component 1), coding system L (component 3).
MSG = parse("MSH|^~\\&|LIS|ASSTMONZA|GW|X|20261120||ORU^R01|1|P|2.5.1\r"
            "PID|1||7^^^ASSTMONZA^MR\rOBX|1|NM|0000412^PCR^L||5|mg/dL|||||F\r"
            "SPM|1|=W12342600004200A&ISBT128\r"  # SPM-2.1.1 DIN with flags, 2.1.2 namespace
)
OBX = MSG.all("OBX")[0]


def test_a_condition_has_at_most_two_clauses() -> None:
    assert len(parse_condition("OBX-3.3 = L and OBX-2 != ST")) == 2
    with pytest.raises(ValueError, match="at most two"):
        parse_condition("OBX-3.3 = L and OBX-2 = NM and OBX-5 present")
    with pytest.raises(ValueError, match="cannot read"):
        parse_condition("OBX-3.3 ~ L")


def test_conditions_read_the_segment_and_other_segments() -> None:
    assert condition_holds("OBX-3.3 = L", OBX)
    assert not condition_holds("OBX-3.3 = LN", OBX)
    assert condition_holds("OBX-3.3 != LN and OBX-5 present", OBX)
    assert condition_holds("PID-3.4 = ASSTMONZA", OBX, MSG)
    assert condition_holds("OBX-4 absent", OBX)


def test_an_override_applies_its_function_only_when_the_condition_holds() -> None:
    assert apply_override("OBX-3.1", "OBX-3.3 = L", "strip-leading-zeros", OBX) == "412"
    assert apply_override("OBX-3.1", "OBX-3.3 = LN", "strip-leading-zeros", OBX) is None
    spm = MSG.all("SPM")[0]
    assert apply_override("SPM-2.1.1", "SPM-2.1.2 = ISBT128", "din-without-flags", spm) == (
        "W123426000042")


@pytest.mark.parametrize(("name", "given", "expected"), [
    ("strip-leading-zeros", "000123", "123"), ("strip-leading-zeros", "000", "0"),
    ("upper", " crp ", "CRP"), ("before-dash", "CRP-SIERO", "CRP"),
    ("din-without-flags", "W123426000042", "W123426000042"),
    ("din-without-flags", "LOT-9", None),
])
def test_the_registered_functions(name: str, given: str, expected: str | None) -> None:
    assert FUNCTIONS[name](given) == expected
