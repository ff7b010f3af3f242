"""HL7 v2 → pseudonymised FHIR R4: the one entry point, ``map_message``.

    result = map_message(msg, site, pseudonym_key=key, received="2026-11-27T10:00:00Z",
                         studies=network.studies, lookup_link=store.link_get)
    result.resources    # Organization, Patient, ResearchStudy, ResearchSubject, Specimen,
                        # Observation, …, Provenance: deterministic ids, deterministic order
    result.new_links    # identifier link key → pseudonym, for the node's link table
    result.create_only  # (type, id) to write only when the store has none yet
    result.report       # findings (positions, never values); result.outcome as OperationOutcome

Pure: no I/O, no clock. Raises ``UnsupportedMessage`` (AR) for types, events and versions
outside ``manifest.MANIFEST`` (or the site's ``message_types``), ``MappingError`` (AE) with
the segment and field when required data is missing or invalid.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field, replace

from gateway.adapters.site import Site, Study
from gateway.errors import MappingError
from gateway.hl7.parser import Message
from gateway.mapping import manifest, scrub
from gateway.mapping.adt import map_adt_obx, map_patient_facts
from gateway.mapping.context import (
    MAPPING_VERSION,
    MappingContext,
    ReportEntry,
    Resource,
    report_outcome,
)
from gateway.mapping.identity import identity_of
from gateway.mapping.manifest import Content, Spec
from gateway.mapping.organization import organization
from gateway.mapping.patient import map_merge, map_patient
from gateway.mapping.provenance import provenance
from gateway.mapping.research import map_registration, map_trials, study_index, tag_with_studies
from gateway.mapping.results import map_results

__all__ = ["MAPPING_VERSION", "MappingResult", "map_message"]

RESOURCE_ORDER = ("Organization", "Patient", "ResearchStudy", "ResearchSubject", "Specimen",
                  "Observation")


@dataclass(slots=True)
class MappingResult:
    resources: list[Resource]
    new_links: dict[str, str] = field(default_factory=dict)
    report: list[ReportEntry] = field(default_factory=list)
    outcome: Resource = field(default_factory=dict)
    create_only: set[tuple[str, str]] = field(default_factory=set)


def map_message(message: Message, site: Site, *, pseudonym_key: bytes, received: str,
                studies: Sequence[Study] = (),
                lookup_link: Callable[[str], str | None] = lambda _key: None,
                require_patient: bool = True,
                checkpoint: Callable[[], None] = lambda: None,
                max_resources: int | None = None) -> MappingResult:
    """``require_patient=False`` maps result messages without a usable PID (no Patient, no
    subject): for corpus and golden tests only; the ingest edge always requires one.
    ``checkpoint`` is called between segments and resources; an exception it raises (the
    ingest's time budget) abandons the mapping, as does a message that maps to more than
    ``max_resources`` resources (``BudgetExceeded``)."""
    spec = manifest.check(message, site)
    if not require_patient:
        spec = replace(spec, pid_required=False)
    ctx = MappingContext(site, message, pseudonym_key, received, study_index(studies),
                         lookup_link, checkpoint=checkpoint, max_resources=max_resources)
    ctx.add(organization(site))
    BUILDERS[spec.content](ctx, spec)
    checkpoint()
    _guard_patient_identifiers(ctx)
    _scrub_free_text(ctx)
    _report_unmapped(ctx)
    resources = ordered(ctx.resources.values())
    resources.append(provenance(ctx, resources))
    return MappingResult(resources, dict(ctx.new_links), list(ctx.report),
                         report_outcome(ctx.report), set(ctx.create_only))


def link_keys(message: Message, site: Site, *, pseudonym_key: bytes) -> list[str]:
    """The pseudonym-link keys that mapping ``message`` will look up (its PID-3 and MRG-1
    identifiers), for a caller that fetches them all at once beforehand. A hint: a key
    missing here is still looked up on its own."""
    from gateway.mapping import pseudonym
    from gateway.mapping.patient import pid_identifiers

    ctx = MappingContext(site, message, pseudonym_key, "")
    keys: list[str] = []
    for segment in message.segments:
        if segment.name == "PID":
            ids = pseudonym.read_cx_list(ctx, pid_identifiers(ctx, segment), "PID-3")
        elif segment.name == "MRG":
            ids = pseudonym.read_cx_list(ctx, segment.reps(1), "MRG-1")
        else:
            continue
        keys += [pseudonym.link_key(ctx, cx) for cx in ids]
    return keys


def ordered(resources: Iterable[Resource]) -> list[Resource]:
    """Fixed type order (RESOURCE_ORDER, then other types by name); within a type, the
    order the builders produced them (itself deterministic)."""
    def rank(item: tuple[int, Resource]) -> tuple[int, str, int]:
        index, resource = item
        kind = resource["resourceType"]
        pos = RESOURCE_ORDER.index(kind) if kind in RESOURCE_ORDER else len(RESOURCE_ORDER)
        return pos, "" if kind in RESOURCE_ORDER else kind, index
    return [r for _, r in sorted(enumerate(resources), key=rank)]


# --- one builder per kind of content (manifest.Content) --------------------------------
def _patient(ctx: MappingContext, spec: Spec) -> str | None:
    """The message's one patient (PID); several PATIENT groups are refused, not guessed."""
    pids = ctx.message.all("PID")
    if len(pids) > 1:
        raise MappingError("PID[2]: more than one patient in one message is not supported; "
                           "send one message per patient", segment="PID", sequence=2,
                           code="100")
    if not pids or (not spec.pid_required and not pids[0].reps(3)):
        if spec.pid_required:
            raise MappingError("PID: required segment missing", segment="PID", code="100")
        return None
    return map_patient(ctx, pids[0])


def _results(ctx: MappingContext, spec: Spec) -> None:
    patient = _patient(ctx, spec)
    studies = map_trials(ctx, patient)
    map_results(ctx, {"reference": f"Patient/{patient}"} if patient else None)
    if studies:
        tag_with_studies(ctx.resources.values(), studies)


def _patient_only(ctx: MappingContext, spec: Spec) -> None:
    """ADT patient events: the Patient, and the OBX, PDA and ACC facts about it."""
    patient = _patient(ctx, spec)
    studies = map_trials(ctx, patient)
    map_adt_obx(ctx, patient)
    map_patient_facts(ctx, patient)
    if studies:
        tag_with_studies(ctx.resources.values(), studies)


def _merge(ctx: MappingContext, spec: Spec) -> None:
    pairs = manifest.groups(ctx.message, "PID", "MRG")
    if not pairs:
        raise MappingError("PID: required segment missing", segment="PID", code="100")
    for seq, (pid, mrg) in enumerate(pairs, start=1):  # every PID heads a pair: PID[seq]
        ctx.checkpoint()
        if mrg is None:
            raise MappingError(f"MRG: required segment missing after PID[{seq}]",
                               segment="MRG", sequence=seq, code="100")
        map_merge(ctx, pid, mrg)


def _registration(ctx: MappingContext, spec: Spec) -> None:
    pairs = manifest.groups(ctx.message, "PID", "CSR")
    if not pairs:
        raise MappingError("PID: required segment missing", segment="PID", code="100")
    phases = {csr.index: csp for csr, csp in manifest.groups(ctx.message, "CSR", "CSP")}
    for seq, (pid, csr) in enumerate(pairs, start=1):  # every PID heads a pair: seq is PID[n]
        ctx.checkpoint()
        if csr is None:
            raise MappingError(f"CSR: required segment missing after PID[{seq}]",
                               segment="CSR", sequence=seq, code="100")
        map_registration(ctx, csr, map_patient(ctx, pid), phases.get(csr.index))
    map_trials(ctx, None)


BUILDERS: dict[Content, Callable[[MappingContext, Spec], None]] = {
    Content.RESULTS: _results,
    Content.PATIENT: _patient_only,
    Content.MERGE: _merge,
    Content.REGISTRATION: _registration,
}


def _guard_patient_identifiers(ctx: MappingContext) -> None:
    """Last line of defence: an identifier whose value is one of the PID-3 identifiers (a
    specimen numbered with the MRN, say) is hashed, whatever builder produced it."""
    pids = ctx.message.all("PID")
    private = {r.c(1).strip() for pid in pids for r in pid.reps(3)} - {""}
    if not private:
        return
    for resource in ctx.resources.values():
        if resource["resourceType"] == "Patient":
            continue
        for ident in resource.get("identifier", ()):
            if ident.get("value") in private:
                ident["value"] = ctx.pseudonym("id", ident.get("system", ""), ident["value"])
                ident["system"] = "urn:plagencell:hashed:id"
                ctx.warn(f"{resource['resourceType']}.identifier", "an identifier equal to a "
                         "PID-3 patient identifier was hashed", code="security")


def _scrub_free_text(ctx: MappingContext) -> None:
    """Every text a sender wrote (notes, TX/FT/ST values, code texts and displays) without
    the identity of the message's people (``scrub``), unless the site keeps it raw."""
    if ctx.site.privacy.free_text == "keep":
        return
    scrubber = scrub.Scrubber(identity_of(ctx.message, ctx.site))
    scrub.scrub_resources(ctx.resources.values(), scrubber)
    line = scrub.summary(scrubber)
    if line:
        ctx.info("free text", line, code="informational")


def _report_unmapped(ctx: MappingContext) -> None:
    for name, positions in manifest.unmapped_segments(ctx.message).items():
        where = f"{name}[1]" if len(positions) == 1 else f"{name}[1..{len(positions)}]"
        ctx.info(where, manifest.unmapped_reason(name), code="not-supported")

