"""The import report: rows accepted, rows rejected (row number, column, reason), and what
the store did. JSON for people and scripts, an OperationOutcome for FHIR clients. It never
holds a cell value: positions and reasons only."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from gateway.adapters.labexport.rows import RowIssue

ISSUE_CODE = {"test_code": "code-invalid", "site_subject_id": "required", "value": "value",
              "unit": "value", "duplicate": "duplicate", "conflict": "conflict"}


@dataclass(slots=True)
class ImportReport:
    file: str
    site: str
    sha256: str
    layout: str | None = None
    rows: int = 0
    accepted: int = 0
    rejected: list[RowIssue] = field(default_factory=list)
    warnings: list[RowIssue] = field(default_factory=list)  # accepted rows: a kept local code
    created: int = 0
    updated: int = 0
    unchanged: int = 0
    retired: int = 0  # a replay: results deleted, ids an earlier mapping made and this one not
    already_imported: bool = False
    error: str | None = None  # the file as a whole could not be read
    inbox_id: int | None = None
    scrubbed: dict[str, int] = field(default_factory=dict)  # marker kind → count, no values

    @property
    def ok(self) -> bool:
        """The file was read and every row accepted."""
        return self.error is None and not self.rejected

    def to_json(self) -> dict[str, Any]:
        return {
            "file": self.file, "site": self.site, "sha256": self.sha256, "layout": self.layout,
            "rows": self.rows, "accepted": self.accepted,
            "rejected": [{"row": i.row, "column": i.column, "reason": i.reason}
                         for i in self.rejected],
            "warnings": [{"row": i.row, "column": i.column, "reason": i.reason}
                         for i in self.warnings],
            "resources": {"created": self.created, "updated": self.updated,
                          "unchanged": self.unchanged},
            "already_imported": self.already_imported, "error": self.error,
            "inbox_id": self.inbox_id, "scrubbed": self.scrubbed,
        }

    def to_outcome(self) -> dict[str, Any]:
        issues: list[dict[str, Any]] = []
        if self.error:
            issues.append({"severity": "error", "code": "invalid", "diagnostics": self.error,
                           "location": [self.file]})
        for i in [*self.rejected, *self.warnings]:
            issues.append({"severity": i.severity, "code": ISSUE_CODE.get(i.column, "invalid"),
                           "diagnostics": f"row {i.row}, column {i.column}: {i.reason}",
                           "location": [f"row[{i.row}].{i.column}"]})
        issues.append({"severity": "information", "code": "informational",
                       "diagnostics": self.summary()})
        if self.scrubbed:
            kinds = ", ".join(f"{k} {n}" for k, n in sorted(self.scrubbed.items()))
            issues.append({"severity": "information", "code": "informational",
                           "diagnostics": f"identity removed from sender text: {kinds}",
                           "location": ["free text"]})
        return {"resourceType": "OperationOutcome", "issue": issues}

    def summary(self) -> str:
        if self.error:
            return f"{self.file}: not imported: {self.error}"
        again = " (already imported: nothing new)" if self.already_imported else ""
        return (f"{self.file}: {self.accepted} of {self.rows} rows accepted, "
                f"{len(self.rejected)} rejected; resources created {self.created}, "
                f"updated {self.updated}, unchanged {self.unchanged}{again}")
