"""Property-based round trips of the ER7 parser: escape/unescape and whole messages."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from gateway.hl7.parser import (
    DEFAULT_ENCODING,
    Encoding,
    escape,
    parse,
    split_messages,
    unescape,
)

FIVE = Encoding(truncation="#")
ENCODINGS = st.sampled_from([DEFAULT_ENCODING, FIVE, Encoding("!", "$", "*", "/", "%")])
# Any text, including delimiters, escape characters, CR/LF and non-ASCII.
TEXT = st.text(alphabet=st.characters(blacklist_categories=("Cs",)), max_size=60)
VALUE = st.text(alphabet=st.sampled_from("ab Z09.-<>é^~\\&#|!$*/%\r\nµ"), max_size=20)


@given(TEXT, ENCODINGS)
def test_unescape_of_escape_is_the_original_text(text: str, enc: Encoding) -> None:
    assert unescape(escape(text, enc), enc) == text


@given(TEXT, ENCODINGS)
def test_escaped_text_contains_no_bare_delimiter(text: str, enc: Encoding) -> None:
    out = escape(text, enc)
    for ch in (enc.field, enc.component, enc.repetition, enc.subcomponent, "\r", "\n"):
        assert ch not in out
    if enc.truncation:
        assert enc.truncation not in out


@given(st.lists(st.lists(VALUE, min_size=1, max_size=4), min_size=1, max_size=8), ENCODINGS)
def test_a_message_built_from_escaped_values_parses_back_to_the_same_values(
        fields: list[list[str]], enc: Encoding) -> None:
    sep = enc.field
    msh = sep.join(["MSH", enc.msh2, "LAB", "HPG23", "GW", "NET", "20260101", "",
                    f"ORU{enc.component}R01", "1", "P", "2.5.1"])
    obx = sep.join(["OBX"] + [enc.component.join(escape(v, enc) for v in comps)
                              for comps in fields])
    msg = parse(msh + "\r" + obx + "\r")
    seg = msg.segment("OBX")
    assert seg is not None
    for n, comps in enumerate(fields, start=1):
        assert [seg.get(n, i) for i in range(1, len(comps) + 1)] == comps


@given(st.lists(VALUE, min_size=1, max_size=5), ENCODINGS)
def test_repetitions_of_escaped_values_parse_back_in_order(values: list[str],
                                                           enc: Encoding) -> None:
    rep = enc.repetition.join(escape(v, enc) or '""' for v in values)
    msh = enc.field.join(["MSH", enc.msh2, "A", "B", "C", "D", "2026", "", "ADT", "1", "P",
                          "2.5.1"])
    msg = parse(f"{msh}\rPID{enc.field}1{enc.field}{enc.field}{rep}\r")
    seg = msg.segment("PID")
    assert seg is not None
    got = [r.text for r in seg.reps(3)]
    assert got == [v or '""' for v in values]


MSH_A = "MSH|^~\\&|LAB|HPG23|GW|NET|2026||ORU^R01|A|P|2.5.1"
MSH_B = "MSH|^~\\&#|LAB|HPG23|GW|NET|2026||ORU^R01|B|P|2.7"


def test_split_messages_tolerates_bom_and_any_line_ends() -> None:
    for brk in ("\r", "\n", "\r\n"):
        data = ("\ufeff" + brk.join([MSH_A, "PID|1", MSH_B, "PID|2"]) + brk).encode()
        texts = split_messages(data)
        assert [parse(t).control_id for t in texts] == ["A", "B"]
        assert texts[1].startswith("MSH|^~\\&#|") and texts[1].endswith("PID|2\r")


def test_split_messages_unwraps_fhs_bhs_batches() -> None:
    batch = "\r".join(["FHS|^~\\&|LAB", "BHS|^~\\&|LAB", MSH_A, "PID|1", MSH_B, "PID|2",
                       "BTS|2", "FTS|1"])
    assert [parse(t).control_id for t in split_messages(batch)] == ["A", "B"]
