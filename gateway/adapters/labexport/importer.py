"""Import one lab-export file: read, validate every row, build the resources of the good
rows, and commit them through the store in one transaction with an inbox record
(transport ``file``, control id = sha256 of the file, facility = the site's first).

A bad row is reported and skipped; it never stops the good ones. The same file again is
recognised by its inbox record and writes nothing (ids are deterministic anyway, and the
store makes no new version of identical content).
"""

from __future__ import annotations

import hashlib
import logging
import re
from collections.abc import Callable
from datetime import UTC, datetime

from gateway.adapters import hooks
from gateway.adapters.labexport.build import build_row, export_context, site_organization
from gateway.adapters.labexport.reader import ExportFileError, Table, read_table
from gateway.adapters.labexport.report import ImportReport
from gateway.adapters.labexport.rows import LabRow, RowError, RowIssue, parse_row
from gateway.adapters.loader import Network
from gateway.adapters.site import Site
from gateway.errors import ConfigError, GatewayError
from gateway.mapping import scrub
from gateway.mapping.context import MappingContext
from gateway.mapping.identity import export_identity
from gateway.store.base import InboxRecord, Store, Transaction

log = logging.getLogger(__name__)

SENDER_APPLICATION = "LAB-EXPORT"
MESSAGE_TYPE = "LAB-EXPORT"
CREATE_ONLY = frozenset({"Patient", "ResearchStudy", "ResearchSubject", "Organization"})
Progress = Callable[[int], None]


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def validate_rows(table: Table, site: Site, network: Network, report: ImportReport,
                  progress: Progress | None = None) -> list[LabRow]:
    """Parse every row; bad rows (every error of each), repeats and conflicts go to
    ``report.rejected``, warnings (a kept unmapped code) to ``report.warnings``."""
    good: list[LabRow] = []
    seen: dict[tuple[str, ...], LabRow] = {}
    for number, values in table.rows:
        try:
            row = parse_row(number, hooks.lab_row(site, values), site, network,
                            decimal_comma=table.decimal_comma, date_formats=table.date_formats)
        except RowError as exc:
            report.rejected.extend(exc.issues)
        else:
            first = seen.setdefault(row.key(), row)
            if first is not row:
                report.rejected.append(_repeat(first, row))
            else:
                good.append(row)
                report.warnings.extend(row.issues)
        if progress:
            progress(1)
    return good


def _repeat(first: LabRow, row: LabRow) -> RowIssue:
    """The same result (subject, specimen, code, times) again: a duplicate when the value is
    the same, a conflict (which one is right?) when it is not."""
    if (first.value, first.comparator, first.unit) == (row.value, row.comparator, row.unit):
        return RowIssue(row.row, "duplicate", f"same result as row {first.row}")
    return RowIssue(row.row, "conflict", f"same result as row {first.row} with another value: "
                    "neither is imported twice; correct the file (or send the correction as "
                    "result_status corrected) and import it again")


def build_rows(ctx: MappingContext, rows: list[LabRow], report: ImportReport,
               filename: str) -> None:
    ctx.add(site_organization(ctx.site))
    for row in rows:
        try:
            build_row(ctx, row, report.sha256, filename)
        except (GatewayError, ValueError, KeyError) as exc:
            report.rejected.append(RowIssue(row.row, "(row)", f"not mapped: {exc}"))
        else:
            report.accepted += 1
    report.rejected.sort(key=lambda i: i.row)
    _scrub(ctx, rows, report)


def _scrub(ctx: MappingContext, rows: list[LabRow], report: ImportReport) -> None:
    """Test names and text values as the HL7 path treats code texts and ST values: without
    the identity of the file's subjects, codice fiscale, phones… (``gateway.mapping.scrub``)."""
    if ctx.site.privacy.free_text == "keep":
        return
    scrubber = scrub.Scrubber(export_identity(ctx.site, {row.subject for row in rows}))
    scrub.scrub_resources(ctx.resources.values(), scrubber)
    report.scrubbed = dict(scrubber.counts)


def _write(tx: Transaction, ctx: MappingContext, report: ImportReport) -> list[str]:
    headers = {"site": ctx.site.id, "message-id": f"sha256:{report.sha256}"}
    refs = []
    for (rtype, rid), resource in ctx.resources.items():
        stub = "tag" in resource.get("meta", {})
        if (rtype in CREATE_ONLY or stub) and tx.get(rtype, rid) is not None:
            report.unchanged += 1
            continue
        change = tx.put(resource, source=f"urn:plagencell:site:{ctx.site.id}", headers=headers)
        refs.append(f"{change.resource_type}/{change.id}/_history/{change.version_id}")
        report.created += int(change.created)
        report.updated += int(change.changed and not change.created)
        report.unchanged += int(not change.changed)
    for key, pseudonym in ctx.new_links.items():
        tx.link_put(key, pseudonym)
    return refs


def _record(site: Site, data: bytes, report: ImportReport, received: str,
            refs: list[str]) -> InboxRecord:
    from gateway.adapters.governance import export_unmapped  # it reads this package's files

    status = "rejected" if report.error else "processed"
    record = InboxRecord(SENDER_APPLICATION, site.facilities[0], report.sha256, data, received,
                         "file", site=site.id, message_type=MESSAGE_TYPE, status=status,
                         error=report.error, report=report.to_outcome(), resource_refs=refs)
    record.unmapped = export_unmapped(record, site)
    return record


def import_export(store: Store, network: Network, site_id: str, data: bytes, filename: str,
                  pseudonym_key: bytes, *, layout: str | None = None,
                  received: str | None = None, progress: Progress | None = None,
                  on_rows: Callable[[int], None] | None = None) -> ImportReport:
    """Import ``data`` (CSV, TSV or XLSX bytes) for ``site_id``; never raises for bad rows."""
    site = network.sites.get(site_id)
    if site is None:
        raise ConfigError(f"no site {site_id!r} in the site files", field="site")
    report = ImportReport(filename, site.id, hashlib.sha256(data).hexdigest())
    received = received or _now()
    try:
        table = read_table(data, site, layout)
    except ExportFileError as exc:
        report.error = exc.message
        return _save_rejected(store, site, data, report, received)
    report.layout, report.rows = table.layout, len(table.rows) + len(table.unreadable)
    report.rejected.extend(table.unreadable)
    if on_rows:
        on_rows(report.rows)
    rows = validate_rows(table, site, network, report, progress)
    previous = store.inbox_find(SENDER_APPLICATION, site.facilities[0], report.sha256)
    if previous is not None and previous.status == "processed":
        report.accepted, report.already_imported = len(rows), True
        report.unchanged, report.inbox_id = len(previous.resource_refs), previous.id
        return report
    with store.transaction() as tx:
        ctx = export_context(site, pseudonym_key, received, tx.link_get)
        build_rows(ctx, rows, report, filename)
        refs = _write(tx, ctx, report)
        record = _record(site, data, report, received, refs)
        if previous is None:
            report.inbox_id = tx.inbox_add(record)
        else:  # refused before (unreadable with the site files of then): its record, updated
            record.id = report.inbox_id = previous.id
            tx.inbox_update(record)
    log.info("lab export %s for site %s: %d/%d rows accepted", report.sha256[:12], site.id,
             report.accepted, report.rows)
    return report


def reimport(store: Store, network: Network, record: InboxRecord,
             pseudonym_key: bytes) -> ImportReport:
    """Replay of an imported file (``gateway replay``): map its rows again with the current
    site files, write what changed, retire the results an earlier mapping wrote under ids
    it no longer produces (``report.retired``), and update the file's inbox record."""
    from gateway.ingest import rekey

    site = network.sites.get(record.site or "")
    if site is None:
        raise ConfigError(f"no site {record.site!r} in the site files", field="site")
    report = ImportReport(_filename(record), site.id, record.control_id)
    try:
        table = read_table(record.raw, site, None)
    except ExportFileError as exc:
        report.error = exc.message
        return report
    report.layout, report.rows = table.layout, len(table.rows)
    rows = validate_rows(table, site, network, report)
    with store.transaction() as tx:
        ctx = export_context(site, pseudonym_key, record.received, tx.link_get)
        build_rows(ctx, rows, report, report.file)
        refs = _write(tx, ctx, report)
        report.retired = len(rekey.retire(
            tx, record.resource_refs, set(ctx.resources), source=f"urn:plagencell:site:{site.id}",
            headers={"site": site.id, "message-id": f"sha256:{report.sha256}"}))
        updated = _record(site, record.raw, report, record.received, refs)
        updated.id = report.inbox_id = record.id
        tx.inbox_update(updated)
    return report


def _filename(record: InboxRecord) -> str:
    """The file name the import report of ``record`` names (Provenance shows it)."""
    for issue in (record.report or {}).get("issue", []):
        found = re.match(r"(.*): (\d+ of \d+ rows accepted|not imported)",
                         str(issue.get("diagnostics", "")))
        if found:
            return found.group(1)
    return "upload"


def _save_rejected(store: Store, site: Site, data: bytes, report: ImportReport,
                   received: str) -> ImportReport:
    log.warning("lab export %s for site %s not readable: %s", report.sha256[:12], site.id,
                report.error)
    if store.inbox_find(SENDER_APPLICATION, site.facilities[0], report.sha256) is None:
        with store.transaction() as tx:
            report.inbox_id = tx.inbox_add(_record(site, data, report, received, []))
    return report
