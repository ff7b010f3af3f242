"""SPM → Specimen (HL7 v2-to-FHIR IG STU1, SPM[Specimen]); OBR → Specimen when an order
group carries no SPM (IG OBR[Specimen]: OBR-7 collected, OBR-15 source, OBR-14 received).

Identifiers: SPM-2 (EIP: placer ^ filler), SPM-30 (accession) and SPM-31 are keyed hashes
(``urn:plagencell:hashed:<kind>``): lab specimen numbers can lead back to a person. An ISBT
128 Donation Identification Number (DIN) is kept in clear with the system
``https://www.isbt128.org/uri/DonationIdentificationNumber``: a DIN identifies a donation /
cell product (the chain of identity of a CAR-T product), not a person, and the network needs
it to follow apheresis → manufactured product → release sample across sites.

Ids are deterministic from the first DIN, else the hashed filler id, else the hashed placer
id, so a parent named in SPM-3 by one message and described in full by another is the same
resource. A parent only referenced gets a stub Specimen (identifier only, tagged
``reference-stub``) listed in ``ctx.create_only``: the store writes it only when it has no
Specimen of that id yet, so a stub never overwrites the full description.
"""

from __future__ import annotations

import re
from typing import Any

from gateway.hl7.parser import Composite, Segment
from gateway.mapping import datatypes as dt
from gateway.mapping import tables as t
from gateway.mapping.context import MappingContext
from gateway.mapping.observation import Order, at, time_field, where
from gateway.mapping.overrides import coded, override

JSON = dict[str, Any]
DIN_PATTERN = re.compile(r"^[A-Z][A-Z0-9]{4}\d{2}\d{6}$")  # FIN (5) + year (2) + sequence (6)
ISBT_NAMESPACES = frozenset({"ISBT128", "ISBT 128", "ISBT-128", "ICCBBA"})
STUB_TAG = {"system": "urn:plagencell:tag", "code": "reference-stub"}
AVAILABILITY = {"Y": "available", "N": "unavailable"}


def din_of(value: str, namespace: str = "") -> str | None:
    """The 13-character DIN in ``value``: exactly a DIN, or (namespace ISBT128) a DIN
    followed by flag / check characters, optionally behind the ``=`` data identifier."""
    text = value.strip().replace(" ", "").upper()
    if DIN_PATTERN.match(text):
        return text
    if namespace.strip().upper() in ISBT_NAMESPACES:
        text = text.removeprefix("=")
        if DIN_PATTERN.match(text[:13]):
            return text[:13]
    return None


def din_identifier(din: str) -> JSON:
    return {"system": t.ISBT128_DIN, "value": din}


def _ei_identifier(ctx: MappingContext, parts: list[str], type_code: str) -> JSON | None:
    """An EI given as sub-components (inside an EIP) → DIN in clear, else hashed."""
    value, namespace = (parts + ["", "", "", ""])[:2]
    if not value:
        return None
    din = din_of(value, namespace)
    if din:
        return din_identifier(din)
    universal, kind = (parts + ["", "", "", ""])[2:4]
    system = dt.hd_to_system(namespace, universal, kind, ctx.site.id)
    return dt.hashed_identifier("specimen", system, value, ctx.pseudonym, type_code)


def eip_identifiers(ctx: MappingContext, comp: Composite) -> list[JSON]:
    """EIP (placer EI ^ filler EI) → identifiers typed PLAC / FILL (or DINs)."""
    out = []
    for i, type_code in ((1, "PLAC"), (2, "FILL")):
        ident = _ei_identifier(ctx, comp.subs(i), type_code)
        if ident and ident not in out:
            out.append(ident)
    return out


def _cx_identifiers(ctx: MappingContext, spm: Segment, fld: int, type_code: str) -> list[JSON]:
    out = []
    for rep in spm.reps(fld):
        value = rep.c(1)
        din = din_of(value, rep.c(4, 1)) if value else None
        if din:
            out.append(din_identifier(din))
        elif value:
            system = dt.hd_to_system(rep.c(4, 1), rep.c(4, 2), rep.c(4, 3), ctx.site.id)
            out.append(dt.hashed_identifier("specimen", system, value, ctx.pseudonym,
                                            type_code))
    return out


def specimen_id(ctx: MappingContext, identifiers: list[JSON], fallback: tuple[str, ...]) -> str:
    """From the first DIN, else the FILL, else the PLAC identifier, else ``fallback``."""
    def pick(pred: Any) -> JSON | None:
        return next((i for i in identifiers if pred(i)), None)

    chosen = (pick(lambda i: i["system"] == t.ISBT128_DIN)
              or pick(lambda i: _type(i) == "FILL") or pick(lambda i: _type(i) == "PLAC"))
    if chosen:
        return ctx.rid("Specimen", chosen["system"], chosen["value"])
    return ctx.rid("Specimen", *fallback)


def _type(ident: JSON) -> str:
    codings = ident.get("type", {}).get("coding", [{}])
    return str(codings[0].get("code", ""))


def _parents(ctx: MappingContext, spm: Segment, subject: JSON | None) -> list[JSON]:
    """SPM-3 (EIP, repeating) → references; a stub is added for a parent not yet known."""
    refs = []
    for rep in spm.reps(3):
        idents = eip_identifiers(ctx, rep)
        if not idents:
            continue
        rid = specimen_id(ctx, idents, ())
        if ("Specimen", rid) not in ctx.resources:
            stub: JSON = {"resourceType": "Specimen", "id": rid, "meta": {"tag": [STUB_TAG]},
                          "identifier": idents}
            if subject:
                stub["subject"] = subject
            ctx.add(stub)
            ctx.create_only.add(("Specimen", rid))
        refs.append({"reference": f"Specimen/{rid}"})
    return refs


def build_specimen(ctx: MappingContext, spm: Segment, seq: int, order: Order | None, *,
                   subject: JSON | None = None) -> JSON:
    """One SPM → a Specimen added to ``ctx`` (replacing a stub of the same id)."""
    idents = _override_identifier(ctx, spm) + eip_identifiers(ctx, spm.first(2))
    idents += _cx_identifiers(ctx, spm, 30, "ACSN") + _cx_identifiers(ctx, spm, 31, "")
    idents = [i for n, i in enumerate(idents) if i not in idents[:n]]
    fallback = ((order.key if order else ctx.message.control_id), "SPM", spm.get(1) or str(seq))
    spec: JSON = {"resourceType": "Specimen", "id": specimen_id(ctx, idents, fallback)}
    if idents:
        spec["identifier"] = idents
    _status(ctx, spm, seq, spec)
    kind = _specimen_type(ctx, spm)
    if kind:
        spec["type"] = kind
    if subject:
        spec["subject"] = subject
    received = time_field(ctx, spm, seq, 18)
    if received:
        spec["receivedTime"] = received
    parents = _parents(ctx, spm, subject)
    if parents:
        spec["parent"] = parents
    collection = _collection(ctx, spm, seq, order)
    if collection:
        spec["collection"] = collection
    _conditions(ctx, spm, seq, spec)
    ctx.create_only.discard(("Specimen", spec["id"]))
    return ctx.add(spec)


def _specimen_type(ctx: MappingContext, spm: Segment) -> JSON | None:
    """SPM-4 (table 0487 by default), or the site's override of Specimen.type."""
    comp = _with_table(spm.first(4), "HL70487")
    hit = override(ctx.site, "Specimen.type", spm, ctx.message)
    return coded(ctx.site, comp, *hit) if hit else dt.cwe_to_codeable_concept(comp, ctx.site)


def _override_identifier(ctx: MappingContext, spm: Segment) -> list[JSON]:
    """The site's override of Specimen.identifier: a DIN in clear, else hashed."""
    hit = override(ctx.site, "Specimen.identifier", spm, ctx.message)
    if hit is None:
        return []
    din = din_of(hit[0], "ISBT128")
    if din:
        return [din_identifier(din)]
    system = dt.hd_to_system("", "", "", ctx.site.id)
    return [dt.hashed_identifier("specimen", system, hit[0], ctx.pseudonym, "PLAC")]


def _status(ctx: MappingContext, spm: Segment, seq: int, spec: JSON) -> None:
    if spm.reps(21):
        spec["status"] = "unsatisfactory"
        return
    status = AVAILABILITY.get(spm.get(20).upper())
    if status:
        spec["status"] = status


def _collection(ctx: MappingContext, spm: Segment, seq: int, order: Order | None) -> JSON:
    """SPM-17 (DR; start, else the group's OBR-7), SPM-12, SPM-7, SPM-8."""
    out: JSON = {}
    dr = spm.first(17)
    hit = override(ctx.site, "Specimen.collection.collectedDateTime", spm, ctx.message)
    start = time_field(ctx, spm, seq, 17, hit[0] if hit else dr.c(1, 1)) or (
        order.collected if order else None)
    end = time_field(ctx, spm, seq, 17, dr.c(2, 1))
    if start and end:
        out["collectedPeriod"] = {"start": start, "end": end}
    elif start:
        out["collectedDateTime"] = start
    quantity = dt.cq_to_quantity(spm.first(12), ctx.site, at(spm, seq, 12))
    if quantity:
        out["quantity"] = quantity
    method = dt.cwe_to_codeable_concept(spm.first(7), ctx.site)
    if method:
        out["method"] = method
    site = dt.cwe_to_codeable_concept(spm.first(8), ctx.site)
    if site:
        out["bodySite"] = site
    return out


def _conditions(ctx: MappingContext, spm: Segment, seq: int, spec: JSON) -> None:
    conditions = [cc for rep in spm.reps(24)
                  if (cc := dt.cwe_to_codeable_concept(rep, ctx.site))]
    if conditions:
        spec["condition"] = conditions
    texts = [dt.fhir_string(rep.text) for rep in spm.reps(14)]
    if texts and ctx.site.privacy.free_text != "drop":
        spec["note"] = [{"text": text} for text in texts]
    elif texts:
        ctx.info(where(spm, seq, 14), "SPM-14 description dropped (site privacy.free_text: "
                 "drop)", code="suppressed")


def build_obr_specimen(ctx: MappingContext, obr: Segment, seq: int, order: Order, *,
                       subject: JSON | None = None) -> JSON | None:
    """An order group without SPM: a Specimen from OBR-15 (SPS: source, table 0070 when no
    coding system is named; body site), OBR-7
    (collected) and OBR-14 (received), when OBR-7 or OBR-15 is valued. Its id comes from the
    order key and OBR-4 (one order number may carry several panels, each with its time)."""
    sps = obr.first(15)
    collected = order.collected
    if not sps and not collected:
        return None
    spec: JSON = {"resourceType": "Specimen",
                  "id": ctx.rid("Specimen", order.key, "OBR", obr.get(4))}
    kind = dt.cwe_to_codeable_concept(_with_table(_sub_composite(sps, 1), "HL70070"),
                                      ctx.site) if sps else None
    if kind:
        spec["type"] = kind
    if subject:
        spec["subject"] = subject
    if order.received:
        spec["receivedTime"] = order.received
    collection: JSON = {"collectedDateTime": collected} if collected else {}
    body_site = dt.cwe_to_codeable_concept(_sub_composite(sps, 4), ctx.site) if sps else None
    if body_site:
        collection["bodySite"] = body_site
    if collection:
        spec["collection"] = collection
    return ctx.add(spec)


def _with_table(comp: Composite, table: str) -> Composite:
    """A CWE whose triplets default to ``table`` (SPM-4 is table 0487) when CWE-3/6 are
    empty but a code is there."""
    if not comp or (comp.c(3) or not comp.c(1)) and (comp.c(6) or not comp.c(4)):
        return comp
    parts = [*comp.parts, *[""] * max(0, 6 - len(comp.parts))]
    for code_i, name_i in ((0, 2), (3, 5)):
        if parts[code_i] and not parts[name_i]:
            parts[name_i] = table
    return Composite(comp.enc.component.join(parts), comp.enc)


def _sub_composite(comp: Composite, i: int) -> Composite:
    """Component ``i`` of ``comp`` read as a CWE whose components are sub-components."""
    return Composite(comp.enc.component.join(comp.subs(i)), comp.enc)
