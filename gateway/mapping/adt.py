"""What an ADT message says about the patient besides the PID: OBX, PDA and ACC → Observations.

- OBX (ADT_A01 ``[{OBX}]``: height, weight, vital signs; v2-to-FHIR IG ADT_A01 message map,
  OBX[Observation]) → the same Observation builder as results, subject the pseudonymised
  Patient. There is no order number, so the id comes from the patient pseudonym, OBX-3 and
  the first of OBX-14 / OBX-4 / OBX-1 (``patient_obx_key``): a resend updates, a new
  measurement on another day is another Observation.
- PDA (patient death and autopsy) → one Observation per Y/N indicator: PDA-3 death
  certified, PDA-6 autopsy, PDA-9 coroner (codes as FHIR-Converter's PDA template; autopsy
  also LOINC 85699-7). Never PDA-1 cause, PDA-2 location, PDA-4/7 dates, PDA-5/8 people:
  the Patient keeps only ``deceasedBoolean`` from the PID.
- ACC (accident) → one ``injury-incident`` Observation: ACC-1 effective, the Y/N flags
  ACC-5 job related, ACC-6 death, ACC-10 police notified as components, ACC-8 description
  as ``valueString`` only when the site keeps free text. Never ACC-3/ACC-11 (places) or
  ACC-7/ACC-9 (people).
"""

from __future__ import annotations

from typing import Any

from gateway.hl7.parser import Segment
from gateway.mapping import datatypes as dt
from gateway.mapping import tables as t
from gateway.mapping.context import MappingContext
from gateway.mapping.observation import Order, build_observation, time_field, where

JSON = dict[str, Any]
PDA_FLAGS = ((3, "death-certificate", "Death Certificate"), (6, "autopsy", "Autopsy"),
             (9, "coroner", "Coroner"))
ACC_FLAGS = ((5, "AJRI", "Accident Job Related Indicator"),
             (6, "ADI", "Accident Death Indicator"), (10, "PNI", "Police Notified Indicator"))
AUTOPSY_LOINC = {"system": t.LOINC, "code": "85699-7", "display": "Autopsy was performed"}
ACCIDENT_INDICATOR = f"{t.PATIENT_FACTS}:accident-indicator"


def patient_obx_key(ctx: MappingContext, patient: str | None, obx: Segment) -> str:
    """The 'order key' of an ADT OBX: keyed hash of the patient and when/which measurement."""
    moment = obx.get(14) or (f"sub:{obx.get(4)}" if obx.get(4) else f"set:{obx.get(1)}")
    return ctx.pseudonym("patient-obx", patient or ctx.message.control_id, moment)


def map_adt_obx(ctx: MappingContext, patient: str | None) -> None:
    """Every OBX of an ADT message (with the NTE that follow it) → an Observation."""
    subject = _subject(patient)
    pending: tuple[Segment, int, list[Segment]] | None = None
    seq = 0
    for seg in ctx.message.segments:
        ctx.checkpoint()
        if seg.name == "OBX":
            _flush(ctx, patient, subject, pending)
            seq += 1
            pending = (seg, seq, [])
        elif seg.name == "NTE" and pending is not None:
            pending[2].append(seg)
        elif seg.name != "NTE":
            _flush(ctx, patient, subject, pending)
            pending = None
    _flush(ctx, patient, subject, pending)


def _flush(ctx: MappingContext, patient: str | None, subject: JSON | None,
           pending: tuple[Segment, int, list[Segment]] | None) -> None:
    if pending is not None:
        obx, seq, notes = pending
        order = Order(patient_obx_key(ctx, patient, obx))
        build_observation(ctx, obx, seq, order, subject=subject, notes=notes)


def map_patient_facts(ctx: MappingContext, patient: str | None) -> None:
    """PDA and ACC segments → Observations (see the module docstring for what is kept)."""
    subject = _subject(patient)
    owner = patient or ctx.message.control_id
    seqs = {"PDA": 0, "ACC": 0}
    for seg in ctx.message.segments:
        if seg.name in seqs:
            seqs[seg.name] += 1
            if seg.name == "PDA":
                _death_facts(ctx, seg, seqs["PDA"], owner, subject)
            else:
                _accident(ctx, seg, seqs["ACC"], owner, subject)


def _subject(patient: str | None) -> JSON | None:
    return {"reference": f"Patient/{patient}"} if patient else None


def _yes_no(ctx: MappingContext, seg: Segment, seq: int, fld: int) -> JSON | None:
    """A Y/N indicator (table 0136) → CodeableConcept; another value is reported."""
    flag = seg.get(fld).strip().upper()
    if not flag:
        return None
    if flag not in t.YES_NO:
        ctx.warn(where(seg, seq, fld), "not a table 0136 Y/N indicator: left out")
        return None
    return {"coding": [dt.table_coding(flag, "0136", t.YES_NO[flag])]}


def _fact(ctx: MappingContext, owner: str, key: str, code: str, display: str,
          subject: JSON | None) -> JSON:
    codings = [{"system": t.PATIENT_FACTS, "code": code, "display": display}]
    if code == "autopsy":
        codings.append(AUTOPSY_LOINC)
    obs: JSON = {"resourceType": "Observation", "id": ctx.rid("Observation", owner, key, code),
                 "status": "final", "code": {"coding": codings}}
    if subject:
        obs["subject"] = subject
    return obs


def _death_facts(ctx: MappingContext, pda: Segment, seq: int, owner: str,
                 subject: JSON | None) -> None:
    for fld, code, display in PDA_FLAGS:
        value = _yes_no(ctx, pda, seq, fld)
        if value is not None:
            obs = _fact(ctx, owner, "PDA", code, display, subject)
            obs["valueCodeableConcept"] = value
            ctx.add(obs)


def _accident(ctx: MappingContext, acc: Segment, seq: int, owner: str,
              subject: JSON | None) -> None:
    components = []
    for fld, code, display in ACC_FLAGS:
        value = _yes_no(ctx, acc, seq, fld)
        if value is not None:
            components.append({"code": {"coding": [
                {"system": ACCIDENT_INDICATOR, "code": code, "display": display}]},
                "valueCodeableConcept": value})
    text = _description(ctx, acc, seq)
    if not components and not text:
        return
    obs = _fact(ctx, owner, f"ACC|{acc.get(1)}|{seq}", "injury-incident",
                "Injury Incident Description Narrative", subject)
    effective = time_field(ctx, acc, seq, 1)
    if effective:
        obs["effectiveDateTime"] = effective
    if text:
        obs["valueString"] = text
    if components:
        obs["component"] = components
    ctx.add(obs)


def _description(ctx: MappingContext, acc: Segment, seq: int) -> str | None:
    text = dt.fhir_string(acc.get(8)).strip()
    if text and ctx.site.privacy.free_text == "drop":
        ctx.info(where(acc, seq, 8), "ACC-8 description dropped (site privacy.free_text: "
                 "drop)", code="suppressed")
        return None
    return text or None
