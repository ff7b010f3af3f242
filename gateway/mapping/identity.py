"""The identity of a message's own people, read for the scrubber (``scrub.Identity``).

Read from the segments that describe people: PID (patient), PD1 (primary care provider),
NK1 (next of kin), PV1 (doctors, visit numbers), IN1 (insured), GT1 (guarantor), MRG (prior
identifiers and names). ``FIELDS`` is the table: segment → (field, HL7 datatype) pairs; the
datatype says which components identify (XPN family/given/middle, XCN id and name parts,
CX-1, XTN number and e-mail, XAD street, other designation and postal code, DTM date).
The city and the country of an address are not read: on their own they identify no one,
and they name the hospitals too.
"""

from __future__ import annotations

import re
from typing import Any

from gateway.adapters.site import Site
from gateway.hl7.parser import Composite, Message
from gateway.mapping.scrub import Identity

FIELDS: dict[str, tuple[tuple[int, str], ...]] = {
    "PID": ((2, "CX"), (3, "CX"), (4, "CX"), (5, "XPN"), (6, "XPN"), (7, "DTM"),
            (9, "XPN"), (11, "XAD"), (13, "XTN"), (14, "XTN"), (18, "CX"), (19, "ST"),
            (20, "ST"), (21, "CX"), (23, "ST")),
    "PD1": ((4, "XCN"),),
    "NK1": ((2, "XPN"), (4, "XAD"), (5, "XTN"), (6, "XTN"), (16, "DTM"), (30, "XPN"),
            (31, "XTN"), (32, "XAD"), (33, "CX"), (37, "ST")),
    "PV1": ((7, "XCN"), (8, "XCN"), (9, "XCN"), (17, "XCN"), (19, "CX"), (50, "CX"),
            (52, "XCN")),
    "IN1": ((16, "XPN"), (18, "DTM"), (19, "XAD"), (36, "ST"), (49, "CX")),
    "GT1": ((2, "CX"), (3, "XPN"), (5, "XAD"), (6, "XTN"), (7, "XTN"), (8, "DTM"),
            (12, "ST")),
    "MRG": ((1, "CX"), (2, "CX"), (3, "CX"), (5, "CX"), (7, "XPN")),
}
_DATE = re.compile(r"^(\d{4})(\d{2})(\d{2})")
_SHAPE_DIGITS = 6  # an MRN with this many digits gives its shape (e.g. PM-\d{8}) as a pattern


class _Collect:
    def __init__(self) -> None:
        self.names: set[str] = set()
        self.ids: set[str] = set()
        self.phones: set[str] = set()
        self.emails: set[str] = set()
        self.addresses: set[str] = set()
        self.births: set[tuple[int, int, int]] = set()

    def read(self, rep: Composite, datatype: str) -> None:
        getattr(self, f"_{datatype}")(rep)

    def _CX(self, rep: Composite) -> None:  # noqa: N802 - HL7 datatype names
        self.ids.add(rep.c(1).strip())

    def _ST(self, rep: Composite) -> None:  # noqa: N802
        self.ids.add(rep.c(1).strip())

    def _XPN(self, rep: Composite) -> None:  # noqa: N802
        self.names.update({rep.c(1, 1), rep.c(2), rep.c(3)})

    def _XCN(self, rep: Composite) -> None:  # noqa: N802
        self.ids.add(rep.c(1).strip())
        self.names.update({rep.c(2, 1), rep.c(3), rep.c(4)})

    def _XTN(self, rep: Composite) -> None:  # noqa: N802
        for text in (rep.c(1), rep.c(6) + rep.c(7), rep.c(12)):
            digits = "".join(c for c in text if c.isdigit())
            if digits:
                self.phones.add(digits)
        if "@" in rep.c(4):
            self.emails.add(rep.c(4).strip())

    def _XAD(self, rep: Composite) -> None:  # noqa: N802
        self.addresses.update({rep.c(1, 1), rep.c(2), rep.c(5)})

    def _DTM(self, rep: Composite) -> None:  # noqa: N802
        match = _DATE.match(rep.c(1).strip())
        if match:
            year, month, day = (int(g) for g in match.groups())
            if 1 <= month <= 12 and 1 <= day <= 31:
                self.births.add((year, month, day))


def identity_of(message: Message, site: Site) -> Identity:
    """Everything in ``message`` that identifies its people, and the site's authorities."""
    found = _Collect()
    for segment in message.segments:
        for fld, datatype in FIELDS.get(segment.name, ()):
            for rep in segment.reps(fld):
                found.read(rep, datatype)
    authorities = {*site.identifiers.mrn_authorities, *site.facilities}
    return Identity(names=_clean(found.names), ids=_clean(found.ids),
                    phones=frozenset(found.phones), emails=_clean(found.emails),
                    addresses=_clean(found.addresses), births=frozenset(found.births),
                    id_shapes=frozenset(mrn_shapes(message, site)),
                    authorities=_clean(authorities))


def _clean(values: set[str]) -> frozenset[str]:
    return frozenset(v.strip() for v in values if v and v.strip())


def mrn_shapes(message: Message, site: Site) -> set[str]:
    """The shape of each PID-3 MRN of the site's authorities (all PID-3 when the site names
    none) with at least ``_SHAPE_DIGITS`` digits: "PM-00123456" → ``pm-\\d{8}``."""
    wanted = {a.upper() for a in site.identifiers.mrn_authorities}
    out = set()
    for pid in message.all("PID"):
        for rep in pid.reps(3):
            value = rep.c(1).strip()
            if wanted and rep.c(4, 1).upper() not in wanted:
                continue
            if sum(c.isdigit() for c in value) >= _SHAPE_DIGITS and value.isascii():
                out.add(shape(value))
    return out


def shape(value: str) -> str:
    """Digits → ``\\d{n}``, letters → ``[a-z]{n}``, anything else literally."""
    parts = []
    for run in re.findall(r"\d+|[A-Za-z]+|[^A-Za-z\d]", value):
        if run.isdigit():
            parts.append(rf"\d{{{len(run)}}}")
        elif run.isalpha():
            parts.append(rf"[a-z]{{{len(run)}}}")
        else:
            parts.append(re.escape(run))
    return "".join(parts)


def export_identity(site: Site, subjects: set[str]) -> Identity:
    """A lab export names no people: its subjects' ids and the site's authorities."""
    return Identity(ids=_clean(subjects), authorities=_clean(
        {*site.identifiers.mrn_authorities, *site.facilities}))


def fhir_identity(site: Site, patients: list[dict[str, Any]]) -> Identity:
    """The identity in FHIR Patient resources (from a site's FHIR source): name parts,
    identifier values, telecom values, birth dates."""
    found = _Collect()
    for patient in patients:
        for name in _dicts(patient.get("name")):
            found.names.update(str(p) for p in [name.get("family", ""), *name.get("given", [])])
        found.ids.update(str(i.get("value", "")) for i in _dicts(patient.get("identifier")))
        for telecom in _dicts(patient.get("telecom")):
            value = str(telecom.get("value", ""))
            if "@" in value:
                found.emails.add(value)
            elif digits := "".join(c for c in value if c.isdigit()):
                found.phones.add(digits)
        match = _DATE.match(str(patient.get("birthDate", "")).replace("-", ""))
        if match:
            found.births.add(tuple(int(g) for g in match.groups()))  # type: ignore[arg-type]
    return Identity(names=_clean(found.names), ids=_clean(found.ids),
                    phones=frozenset(found.phones), emails=_clean(found.emails),
                    births=frozenset(found.births), authorities=_clean(
                        {*site.identifiers.mrn_authorities, *site.facilities}))


def _dicts(value: Any) -> list[dict[str, Any]]:
    return [v for v in value if isinstance(v, dict)] if isinstance(value, list) else []
