"""Site files: one YAML file per site, read into these pydantic models.

Only ``id``, ``name``, ``kind`` and ``facilities`` are required; everything else has a
default that suits a typical Lombard hospital. ``schemas/site.schema.json`` is generated
from ``Site.model_json_schema()`` (``gateway sites schema``).
"""

from __future__ import annotations

import re
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

NETWORK_CODESYSTEM = "https://plagencell.example.org/fhir/CodeSystem/cgt-lab"
LOCAL_CODESYSTEM = "urn:plagencell:site:{site}:codes"  # = gateway.mapping.tables.SITE_CODES

# The network lab-export CSV columns, in this order (docs/adding-a-site.md).
NETWORK_COLUMNS: tuple[str, ...] = (
    "site_subject_id", "study_id", "specimen_id", "specimen_type", "parent_specimen_id",
    "collected_at", "test_code", "test_system", "test_name", "value", "unit",
    "reference_range", "interpretation", "result_status", "performed_at", "product_din",
)
NetworkColumn = Literal[
    "site_subject_id", "study_id", "specimen_id", "specimen_type", "parent_specimen_id",
    "collected_at", "test_code", "test_system", "test_name", "value", "unit",
    "reference_range", "interpretation", "result_status", "performed_at", "product_din",
]
HL7_PATH = re.compile(r"^[A-Z][A-Z0-9]{2}-\d{1,3}(\.\d{1,2}){0,2}$")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Coding(_Strict):
    """What a local code maps to."""

    system: str
    code: str
    display: str | None = None
    unit: str | None = Field(default=None, description="UCUM unit expected with this code")


class UnitMapping(_Strict):
    """A local unit spelled as UCUM."""

    code: str = Field(description="UCUM code")
    display: str | None = None
    factor: float = Field(default=1.0, description="value in UCUM = local value × factor")


class IdentifierRules(_Strict):
    """How PID-3 identifiers are read at this site."""

    mrn_authorities: list[str] = Field(
        default_factory=list,
        description="PID-3.4 assigning authorities (HD.1) whose identifier is the MRN; "
        "empty: the first PID-3 with type MR, else the first PID-3",
    )
    fiscal_code_types: list[str] = Field(default_factory=lambda: ["NNITA", "NN", "SS"])
    fiscal_code_authorities: list[str] = Field(default_factory=lambda: ["MEF", "SSN", "CF"])
    subject_authority: str | None = Field(
        default=None, description="assigning authority of lab-export site_subject_id values; "
        "default: the site's first facility")


FreeText = Literal["scrub", "drop", "keep"]


class Privacy(_Strict):
    """What becomes of the text a sender writes (docs/mapping.md, "Free text")."""

    free_text: FreeText = Field(
        default="scrub", description="scrub: NTE, TX/FT/ST values, SPM-14 and code texts "
        "kept with the identity of the message's people replaced by markers; drop: NTE, "
        "TX/FT and SPM-14 left out (ST and code texts scrubbed); keep: everything as sent "
        "(needs free_text_reason)")
    free_text_reason: str | None = Field(
        default=None, description="why this site's text may leave the edge unscrubbed "
        "(required with free_text: keep)")

    @model_validator(mode="before")
    @classmethod
    def _replaced(cls, data: Any) -> Any:
        if isinstance(data, dict):
            for old in ("keep_nte", "keep_free_text"):
                if old in data:
                    raise ValueError(f"privacy.{old} is replaced by privacy.free_text: scrub "
                                     "(the default), drop or keep (docs/adding-a-site.md)")
        return data

    @model_validator(mode="after")
    def _reason(self) -> Privacy:
        if self.free_text == "keep" and not (self.free_text_reason or "").strip():
            raise ValueError("privacy.free_text: keep sends names, phones and identifiers "
                             "written in notes off the edge; say why in "
                             "privacy.free_text_reason, or use scrub")
        return self


class LabExportFormat(_Strict):
    """A site's own lab-export layout, read as if it were the network CSV format."""

    name: str = Field(pattern=r"^[a-z0-9][a-z0-9-]{0,62}$")
    format: Literal["csv", "tsv", "xlsx"] = "csv"
    delimiter: str | None = Field(default=None, max_length=1,
                                  description="CSV delimiter; default ',' (tsv: tab)")
    encoding: str = "utf-8-sig"
    sheet: str | None = Field(default=None, description="XLSX sheet; default the first")
    header_row: int = Field(default=1, ge=1, description="1-based row holding the headers")
    columns: dict[NetworkColumn, str] = Field(
        description="network column → the header of the site's column")
    constants: dict[NetworkColumn, str] = Field(
        default_factory=dict, description="network column → a fixed value for every row")
    date_formats: list[str] = Field(
        default_factory=list, description="strptime formats tried before ISO 8601")
    decimal_comma: bool = Field(default=False, description="values use ',' as decimal mark")


OverrideTarget = Literal[
    "Observation.code", "Observation.valueQuantity.unit", "Observation.status",
    "Observation.interpretation", "Observation.effectiveDateTime", "Observation.method",
    "Specimen.type", "Specimen.identifier", "Specimen.collection.collectedDateTime",
    "Patient.identifier",
]


class FieldOverride(_Strict):
    """Read an HL7 field from another place, optionally when a tiny condition holds.

    ``when`` is at most two clauses joined by ``and``: ``PATH = VALUE``, ``PATH != VALUE``,
    ``PATH present``, ``PATH absent``. Anything more is a named function (``function``) in
    ``gateway.adapters.functions``.
    """

    source: str = Field(description="HL7 field path, e.g. OBX-3.1")
    target: OverrideTarget
    when: str | None = Field(default=None, description="e.g. 'OBX-3.3 = L'")
    function: str | None = Field(default=None, description="registered function name")
    system: str | None = Field(default=None, description="coding system for coded targets")

    @field_validator("source")
    @classmethod
    def _path(cls, value: str) -> str:
        if not HL7_PATH.match(value):
            raise ValueError(f"not an HL7 field path like OBX-3.1: {value!r}")
        return value

    @field_validator("when")
    @classmethod
    def _condition(cls, value: str | None) -> str | None:
        from gateway.adapters.functions import parse_condition

        if value is not None:
            parse_condition(value)
        return value

    @field_validator("function")
    @classmethod
    def _function(cls, value: str | None) -> str | None:
        from gateway.adapters.functions import FUNCTIONS

        if value is not None and value not in FUNCTIONS:
            raise ValueError(f"unknown function {value!r}; known: {', '.join(sorted(FUNCTIONS))}")
        return value


class FhirSource(_Strict):
    """A site FHIR server (or LIMS facade) polled incrementally."""

    base_url: str = Field(pattern=r"^https?://")
    enabled: bool = True
    resource_types: list[Literal["Patient", "Observation", "Specimen"]] = Field(
        default_factory=lambda: ["Patient", "Specimen", "Observation"])  # type: ignore[arg-type]
    token_url: str | None = Field(default=None, description="OAuth2 client-credentials URL")
    client_id: str | None = None
    client_secret_env: str | None = Field(
        default=None, description="environment variable holding the client secret")
    scope: str | None = None
    page_size: int = Field(default=100, ge=1, le=1000)
    poll_seconds: float = Field(default=300, gt=0)
    timeout_seconds: float = Field(default=30, gt=0)
    max_retries: int = Field(default=5, ge=0, le=20)


class SiteAlerts(_Strict):
    """When the gateway raises an alert about this site (docs/operations.md, "Alerts")."""

    silent_after_minutes: int | None = Field(
        default=None, gt=0, description="alert when no message came for this many minutes "
        "of the site's working hours")
    working_hours: str | None = Field(
        default=None, description="e.g. 'Mon-Fri 07:00-19:00' (several: comma-separated), "
        "in the site's timezone; default: every hour counts")
    error_rate_percent: float | None = Field(
        default=None, gt=0, le=100, description="alert when more than this share of the "
        "site's messages got AE/AR over the window")
    error_rate_window_minutes: int = Field(default=15, gt=0, le=1440)
    error_rate_min_messages: int = Field(
        default=5, ge=1, description="fewer messages in the window raise no error-rate alert")

    @field_validator("working_hours")
    @classmethod
    def _hours(cls, value: str | None) -> str | None:
        from gateway.observability.hours import parse_hours

        if value is not None:
            parse_hours(value)
        return value


class Site(_Strict):
    id: str = Field(pattern=r"^[a-z0-9][a-z0-9-]{0,62}$")
    name: str
    kind: Literal["hospital", "cell-factory"]
    facilities: list[str] = Field(min_length=1, description="MSH-4 (HD.1) values")
    senders: list[str] = Field(
        default_factory=list, description="MLLP client certificate identities (subject CN "
        "or subjectAltName) allowed to send for this site (--mllp-require-client-cert)")
    city: str | None = None
    timezone: str = "Europe/Rome"
    identifiers: IdentifierRules = Field(default_factory=IdentifierRules)
    code_map: dict[str, Coding] = Field(default_factory=dict)
    unit_map: dict[str, UnitMapping] = Field(default_factory=dict)
    study_aliases: dict[str, str] = Field(
        default_factory=dict, description="local study code → network study identifier")
    message_types: list[str] = Field(
        default_factory=list, description="accepted MSH-9 (CODE^EVENT); empty: all supported")
    privacy: Privacy = Field(default_factory=Privacy)
    unmapped_codes: Literal["accept", "strict"] = Field(
        default="accept", description="a local code missing from code_map: accept (kept in "
        "the site's code system, result stored, code queued in /admin/unmapped-codes) or "
        "strict (the result is refused), alike for HL7, lab exports and the FHIR source")
    strict_validation: bool = Field(
        default=False, description="validate structure and datatypes with hl7apy at ingest")
    lab_exports: list[LabExportFormat] = Field(
        default_factory=list, description="the site's own export layouts (the network CSV "
        "format is always accepted)")
    overrides: list[FieldOverride] = Field(default_factory=list)
    fhir_source: FhirSource | None = None
    adapter: str | None = Field(
        default=None, description="name of a 'gateway.adapters' entry point (Python hooks)")
    alerts: SiteAlerts = Field(default_factory=SiteAlerts)

    @field_validator("message_types")
    @classmethod
    def _message_types(cls, value: list[str]) -> list[str]:
        for item in value:
            if not re.match(r"^[A-Z]{3}\^[A-Z0-9]{3}$", item):
                raise ValueError(f"message type must be CODE^EVENT like ORU^R01: {item!r}")
        return value

    @property
    def local_system(self) -> str:
        """The system of this site's own (unmapped) codes."""
        return LOCAL_CODESYSTEM.format(site=self.id)

    def export_format(self, name: str) -> LabExportFormat | None:
        return next((f for f in self.lab_exports if f.name == name), None)


class StudyIdentifier(_Strict):
    system: str
    value: str


class StudyCondition(_Strict):
    system: str | None = None
    code: str | None = None
    display: str


class Study(_Strict):
    """A study known to the network (the studies file)."""

    id: str = Field(pattern=r"^[a-z0-9][a-z0-9-]{0,62}$", description="network short name")
    identifiers: list[StudyIdentifier] = Field(min_length=1)
    title: str
    phase: str | None = Field(default=None, description="research-study-phase code")
    status: str = "active"
    conditions: list[StudyCondition] = Field(default_factory=list)
    sites: list[str] = Field(default_factory=list, description="site ids taking part")
    sponsor: str | None = None
    aliases: list[str] = Field(default_factory=list, description="local codes sites may send")
    area: Literal["haematological-neoplasms", "neurological-disorders", "kidney-diseases"] | None \
        = Field(default=None, description="the network's research area (ResearchStudy."
                "condition, network CodeSystem research-area)")


class StudiesFile(_Strict):
    studies: list[Study] = Field(default_factory=list)
