"""Raw messages for people: PID fields masked, everything else as sent."""

from __future__ import annotations

from gateway.hl7.mask import readable

# PID-3 MRN + codice fiscale, PID-5 name, PID-7 birth date, PID-11 address: identity
RAW = (b"MSH|^~\\&|LIS|HPG23|GW|PLAGENCELL|20261120153000||ORU^R01|C1|P|2.5.1\r"
       b"PID|1||7001234^^^HPG23^MR~RSSMRA80A01F205X^^^MEF^NNITA||Rossi^Mario||19800101|M|||"
       b"Via Roma 1^^Bergamo\r"
       b"OBX|1|NM|PCR^crp^L||48.2|mg/L\r")


def test_pid_fields_are_masked_and_the_segment_shape_kept() -> None:
    text = readable(RAW)
    assert text.splitlines()[1] == "PID|1||***||***||***|***|||***"
    for value in ("7001234", "RSSMRA80A01F205X", "Rossi", "19800101", "Via Roma"):
        assert value not in text
    assert "OBX|1|NM|PCR^crp^L||48.2|mg/L" in text and text.startswith("MSH|^~\\&|LIS|")


def test_unmasked_is_the_message_as_sent_one_segment_per_line() -> None:
    assert readable(RAW, masked=False) == RAW.decode().strip("\r").replace("\r", "\n")
