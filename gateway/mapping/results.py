"""The message-level walk for result and order messages: OBX → Observation, SPM → Specimen.

One walker serves the v2.5.1+ structures (checked against the standard's message grammars):

    ORU^R01   PID … { [ORC] OBR {NTE} {OBX {NTE}} {SPM {OBX}} }
    OUL^R24   PID … { OBR [ORC] {NTE} {SPM {OBX} {SAC}} {OBX {NTE}} }
    OML^O21   PID … { ORC OBR {NTE} {OBX {NTE}} {SPM {OBX} {SAC}} }
    ORM^O01   PID … { ORC OBR {NTE} {OBX {NTE}} }
    OUL^R22   PID … { SPM {OBX} {SAC} { OBR [ORC] {NTE} {OBX {NTE}} } }
    OUL^R23   PID … { SPM {OBX} { SAC { OBR [ORC] {OBX {NTE}} } } }
    OML^O33   PID … { SPM {OBX} {SAC} { ORC OBR {OBX {NTE}} } }

Order first (an OBR/ORC before the first SPM): an ORC or OBR opens an order group; an SPM
belongs to the open group and the OBX right after it to that SPM. When the group has exactly
one Specimen, every Observation of the group references it; a group without SPM gets a
Specimen from the OBR when OBR-7 or OBR-15 is valued. Specimen first (R22, R23, O33): an SPM
opens a specimen context that every following order group's Observations reference, until
the next SPM. Times: OBX-14, else OBR-7, else OBR-8; OBX-19 (an instant), else OBR-22.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from gateway.hl7.parser import Segment
from gateway.mapping import datatypes as dt
from gateway.mapping.context import MappingContext
from gateway.mapping.observation import Order, build_observation, time_field
from gateway.mapping.specimen import build_obr_specimen, build_specimen

JSON = dict[str, Any]


@dataclass(slots=True)
class _Result:
    obx: Segment
    seq: int
    specimen: JSON | None
    notes: list[Segment] = field(default_factory=list)


@dataclass(slots=True)
class _Group:
    orc: Segment | None = None
    obr: Segment | None = None
    obr_seq: int = 0
    order: Order | None = None
    specimens: list[JSON] = field(default_factory=list)
    in_specimen: JSON | None = None  # the SPM whose OBX are being read
    results: list[_Result] = field(default_factory=list)


def _ref(resource: JSON) -> JSON:
    return {"reference": f"{resource['resourceType']}/{resource['id']}"}


def order_key(ctx: MappingContext, orc: Segment | None, obr: Segment | None) -> str:
    """Keyed hash of the filler order number (OBR-3, ORC-3), else the placer (OBR-2,
    ORC-2), else of OBR-4 + OBR-7 + OBR-1: stable across resends of the same order."""
    for seg, fld in ((obr, 3), (orc, 3), (obr, 2), (orc, 2)):
        if seg is not None and seg.get(fld):
            comp = seg.first(fld)
            return ctx.pseudonym("order", dt.ei_system(comp, ctx.site.id), comp.c(1))
    if obr is not None:
        return ctx.pseudonym("order-fallback", obr.get(4), obr.get(7), obr.get(1))
    return ctx.pseudonym("order-fallback", ctx.message.control_id)


def make_order(ctx: MappingContext, group: _Group) -> Order:
    orc, obr, seq = group.orc, group.obr, group.obr_seq
    idents = []
    for fld, type_code in ((2, "PLAC"), (3, "FILL")):
        seg = obr if obr is not None and obr.get(fld) else orc
        ident = dt.ei_to_identifier(seg.first(fld), ctx.site.id, ctx.pseudonym, "order",
                                    type_code) if seg is not None else None
        if ident:
            idents.append(ident)
    order = Order(order_key(ctx, orc, obr), idents)
    if obr is not None:
        order.collected = time_field(ctx, obr, seq, 7)
        order.effective = order.collected or time_field(ctx, obr, seq, 8)
        order.received = time_field(ctx, obr, seq, 14)
        issued = time_field(ctx, obr, seq, 22)
        order.issued = issued if issued and "T" in issued else None
    return order


class _Walk:
    def __init__(self, ctx: MappingContext, subject: JSON | None) -> None:
        self.ctx = ctx
        self.subject = subject
        self.seq: Counter[str] = Counter()
        self.group: _Group | None = None
        self.specimen_first = _specimen_first(ctx.message.segments)
        self.context_specimen: JSON | None = None  # specimen-first mode
        self.obr_then_orc = ctx.message.message_code.upper() == "OUL"  # OUL: OBR [ORC]

    def feed(self, seg: Segment) -> None:
        self.ctx.checkpoint()
        self.seq[seg.name] += 1
        handler = getattr(self, f"_on_{seg.name}", None)
        if handler is not None:
            handler(seg, self.seq[seg.name])

    def _on_ORC(self, seg: Segment, seq: int) -> None:
        group = self.group
        if self.obr_then_orc and group is not None and group.obr is not None \
                and group.orc is None and not group.results:
            group.orc = seg  # OUL: OBR then ORC in one group
            group.order = make_order(self.ctx, group)
            return
        self.close()
        self.group = _Group(orc=seg)

    def _on_OBR(self, seg: Segment, seq: int) -> None:
        if self.group is None or self.group.obr is not None or self.group.results:
            self.close()
            self.group = _Group()
        self.group.obr, self.group.obr_seq = seg, seq
        self.group.order = make_order(self.ctx, self.group)

    def _on_SPM(self, seg: Segment, seq: int) -> None:
        if self.specimen_first:
            self.close()
            spec = build_specimen(self.ctx, seg, seq, None, subject=self.subject)
            self.context_specimen = _ref(spec)
            self.group = _Group(in_specimen=self.context_specimen)
            self.group.specimens.append(self.context_specimen)
            return
        group = self._open()
        spec = build_specimen(self.ctx, seg, seq, group.order, subject=self.subject)
        group.in_specimen = _ref(spec)
        group.specimens.append(group.in_specimen)

    def _on_OBX(self, seg: Segment, seq: int) -> None:
        group = self._open()
        group.results.append(_Result(seg, seq, group.in_specimen or self.context_specimen))

    def _on_NTE(self, seg: Segment, seq: int) -> None:
        if self.group is not None and self.group.results:
            self.group.results[-1].notes.append(seg)

    def _open(self) -> _Group:
        if self.group is None:
            self.group = _Group()
        return self.group

    def close(self) -> None:
        group, self.group = self.group, None
        if group is None:
            return
        order = group.order or make_order(self.ctx, group)
        only = group.specimens[0] if len(group.specimens) == 1 else None
        if not group.specimens and group.obr is not None and not self.specimen_first:
            spec = build_obr_specimen(self.ctx, group.obr, group.obr_seq, order,
                                      subject=self.subject)
            only = _ref(spec) if spec else None
        for r in group.results:
            self.ctx.checkpoint()
            build_observation(self.ctx, r.obx, r.seq, order, subject=self.subject,
                              specimen=r.specimen or only, notes=r.notes)


def _specimen_first(segments: list[Segment]) -> bool:
    for seg in segments:
        if seg.name in ("OBR", "ORC"):
            return False
        if seg.name == "SPM":
            return True
    return False


def map_results(ctx: MappingContext, subject: JSON | None) -> None:
    """Add the message's Observations and Specimens to ``ctx``; ``subject`` is the Patient
    reference (``{"reference": "Patient/<id>"}``) or None."""
    walk = _Walk(ctx, subject)
    for seg in ctx.message.segments:
        walk.feed(seg)
    walk.close()
