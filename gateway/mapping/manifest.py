"""Which messages the gateway maps, and which resources each one produces (mapping is data).

``MANIFEST`` is the per-message-type table: for every accepted MSH-9 (code, trigger event)
the kind of content it carries; ``check`` refuses everything else with the AR answer the
sender needs (ERR-3 200/201/203 at MSH-9 or MSH-12). ``SEGMENTS`` says what happens to each
segment, so the conversion report can name every segment that was not mapped.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum

from gateway.adapters.site import Site
from gateway.errors import UnsupportedMessage
from gateway.hl7.parser import Message, Segment


class Content(Enum):
    """What a message carries, and so which builders run."""

    RESULTS = "results"  # PID + ORC/OBR/OBX/SPM (+ CTI): Patient, Specimen, Observation
    PATIENT = "patient"  # PID (+ OBX, PDA, ACC): Patient, Observation
    MERGE = "merge"  # PID + MRG: survivor and prior Patient, identifier links
    REGISTRATION = "registration"  # PID + CSR (+ CSP): ResearchStudy, ResearchSubject


@dataclass(frozen=True, slots=True)
class Spec:
    content: Content
    pid_required: bool = True
    produces: tuple[str, ...] = ()


_RESULTS = Spec(Content.RESULTS, True, ("Patient", "Specimen", "Observation"))
_SPECIMENS = Spec(Content.RESULTS, False, ("Patient", "Specimen", "Observation"))
_PATIENT = Spec(Content.PATIENT, True, ("Patient", "Observation"))
# Patient-related ADT events (v2-to-FHIR IG: each carries PID, optional OBX, and A02/A03/A13
# a PDA): A01 admit, A02 transfer, A03 discharge, A04 register, A05 pre-admit, A06/A07
# change outpatient/inpatient, A08 update, A13 cancel discharge, A28 add person, A31 update
# person. Scheduling, pending, leave-of-absence and link events are not patient updates.
PATIENT_EVENTS = ("A01", "A02", "A03", "A04", "A05", "A06", "A07", "A08", "A13", "A28", "A31")
_MERGE = Spec(Content.MERGE, True, ("Patient",))
_REGISTRATION = Spec(Content.REGISTRATION, True,
                     ("Patient", "ResearchStudy", "ResearchSubject"))

# (MSH-9.1, MSH-9.2) → Spec. Every message also yields Organization and Provenance, and a CTI
# segment anywhere adds ResearchStudy + ResearchSubject.
MANIFEST: dict[tuple[str, str], Spec] = {
    ("ORU", "R01"): _RESULTS,
    ("OUL", "R22"): _SPECIMENS,  # OUL: the PATIENT group is optional (specimen-centric)
    ("OUL", "R23"): _SPECIMENS,
    ("OUL", "R24"): _SPECIMENS,
    ("OML", "O21"): _RESULTS,
    ("OML", "O33"): _RESULTS,
    # ORM^O01 (v2.3-v2.5, withdrawn after v2.5 but what most hospital systems still send):
    # { ORC [OBR {NTE} {OBX {NTE}}] }, the results of OML^O21; pharmacy and other detail
    # segments (RXO, ODS, RQD…) carry no results and are reported not mapped.
    ("ORM", "O01"): _RESULTS,
    # OMG^O19 (v2.5+ general clinical orders: pathology, cytology): ORC OBR {NTE} {OBX}
    # {SPM}, the same groups.
    ("OMG", "O19"): _RESULTS,
    **{("ADT", event): _PATIENT for event in PATIENT_EVENTS},
    ("ADT", "A40"): _MERGE,
    **{("CRM", f"C0{n}"): _REGISTRATION for n in range(1, 9)},
}

# MSH-12.1 values accepted: v2.3 to v2.8.
VERSIONS = frozenset({"2.3", "2.3.1", "2.4", "2.5", "2.5.1", "2.6", "2.7", "2.7.1",
                      "2.8", "2.8.1", "2.8.2"})

# Segment → what becomes of it. "mapped": read by a builder; anything else is the reason
# it is not, reported (as information, position only) when it occurs.
MAPPED = frozenset({"MSH", "PID", "MRG", "CSR", "CSP", "CTI", "ORC", "OBR", "OBX", "SPM",
                    "TQ1", "SAC", "NTE", "PDA", "ACC"})
# NTE: kept or dropped by the site's privacy rules; PDA, ACC: only the Y/N facts (adt.py)
DROPPED_PRIVACY = frozenset({"NK1", "PD1", "PV1", "PV2", "GT1", "IN1", "IN2", "IN3", "ROL",
                             "PRT", "AL1", "DG1", "PR1", "DB1", "CON", "ARV", "UB1",
                             "UB2"})
IGNORED = frozenset({"SFT", "EVN", "UAC", "DSC", "ERR", "MSA", "FHS", "FTS", "BHS", "BTS"})


def check(message: Message, site: Site) -> Spec:
    """The Spec of ``message``, or UnsupportedMessage (AR) naming MSH-9 or MSH-12."""
    code, event = message.message_code.upper(), message.trigger_event.upper()
    allowed = _allowed(site)
    if code not in {c for c, _ in allowed}:
        raise UnsupportedMessage(f"MSH-9.1: message type {code or '(empty)'} is not supported",
                                 segment="MSH", field=9, component=1, code="200")
    if (code, event) not in allowed:
        raise UnsupportedMessage(f"MSH-9.2: trigger event {event or '(empty)'} of {code} is "
                                 "not supported", segment="MSH", field=9, component=2,
                                 code="201")
    version = message.msh.get(12, 1)
    if version not in VERSIONS:
        raise UnsupportedMessage("MSH-12: HL7 version is not supported (2.3 to 2.8 are)",
                                 segment="MSH", field=12, component=1, code="203")
    return MANIFEST[(code, event)]


def _allowed(site: Site) -> set[tuple[str, str]]:
    """The manifest's types, narrowed to ``site.message_types`` when the site lists any."""
    if not site.message_types:
        return set(MANIFEST)
    wanted = {tuple(t.upper().split("^")[:2]) for t in site.message_types}
    return {key for key in MANIFEST if key in wanted}


def unmapped_segments(message: Message) -> dict[str, list[int]]:
    """Segments no builder reads: name → 1-based positions in the message (for the report)."""
    out: dict[str, list[int]] = {}
    for seg in message.segments:
        if seg.name not in MAPPED and seg.name not in IGNORED:
            out.setdefault(seg.name, []).append(seg.index + 1)
    return out


def unmapped_reason(name: str) -> str:
    if name in DROPPED_PRIVACY:
        return f"{name}: dropped (identifying or out of scope for the research network)"
    if name.startswith("Z"):
        return f"{name}: site-specific segment, not mapped"
    return f"{name}: segment not mapped"


def occurrence(message: Message, seg: Segment) -> int:
    """1-based occurrence of ``seg`` among the segments of its name (the ERR-2 sequence):
    counted by the parser; counted here only for a segment built by hand."""
    if seg.occurrence:
        return seg.occurrence
    return sum(1 for s in message.segments[: seg.index + 1] if s.name == seg.name)


def groups(message: Message, head: str, member: str) -> list[tuple[Segment, Segment | None]]:
    """(head, first ``member`` after it and before the next head): PID+MRG, PID+CSR."""
    out: list[tuple[Segment, Segment | None]] = []
    for seg in message.segments:
        if seg.name == head:
            out.append((seg, None))
        elif seg.name == member and out and out[-1][1] is None:
            out[-1] = (out[-1][0], seg)
    return out
