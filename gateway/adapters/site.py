"""Site files: one YAML file per site, read into these pydantic models.

Only ``id``, ``name``, ``kind`` and ``facilities`` are required; everything else has a
default that suits a typical Lombard hospital. ``schemas/site.schema.json`` is generated
from ``Site.model_json_schema()``.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field


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


class IdentifierRules(_Strict):
    """How PID-3 identifiers are read at this site."""

    mrn_authorities: list[str] = Field(
        default_factory=list,
        description="PID-3.4 assigning authorities (HD.1) whose identifier is the MRN; "
        "empty: the first PID-3 with type MR, else the first PID-3",
    )
    fiscal_code_types: list[str] = Field(default_factory=lambda: ["NNITA", "NN", "SS"])
    fiscal_code_authorities: list[str] = Field(default_factory=lambda: ["MEF", "SSN", "CF"])


class Privacy(_Strict):
    keep_nte: bool = Field(default=False, description="keep NTE comments as Observation.note")
    keep_free_text: bool = Field(default=False, description="keep TX/FT values as valueString")


class Site(_Strict):
    id: str = Field(pattern=r"^[a-z0-9][a-z0-9-]{0,62}$")
    name: str
    kind: Literal["hospital", "cell-factory"]
    facilities: list[str] = Field(min_length=1, description="MSH-4 (HD.1) values")
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
    strict_validation: bool = Field(
        default=False, description="validate structure and datatypes with hl7apy at ingest")


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
