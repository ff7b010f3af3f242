"""HL7 v2 tables and coding-system names → FHIR codes, as plain data.

Sources: the HL7 v2-to-FHIR IG STU1 ConceptMaps (v2-0085 → observation-status, v2-0078 →
v3-ObservationInterpretation) and the HL7 table 0396 coding-system names. Where the IG leaves
a row blank (0085 B, I, N, O, R, U, V, X), the choice made here is commented. The tables are
checked once at import (``_check``): a malformed row fails at start-up, not on a message.
"""

from __future__ import annotations

import re

LOINC = "http://loinc.org"
SNOMED = "http://snomed.info/sct"
UCUM = "http://unitsofmeasure.org"
V2_SYSTEM = "http://terminology.hl7.org/CodeSystem/v2-{table}"
V3_INTERPRETATION = "http://terminology.hl7.org/CodeSystem/v3-ObservationInterpretation"
OBSERVATION_CATEGORY = "http://terminology.hl7.org/CodeSystem/observation-category"
DATA_ABSENT = "http://terminology.hl7.org/CodeSystem/data-absent-reason"
ISBT128_DIN = "https://www.isbt128.org/uri/DonationIdentificationNumber"
HASHED_SYSTEM = "urn:plagencell:hashed:{kind}"
SITE_CODES = "urn:plagencell:site:{site}:codes"

# HL7 table 0396 coding-system names (CWE-3 / CWE-6) → FHIR system URIs.
CODING_SYSTEMS: dict[str, str] = {
    "LN": LOINC,
    "LOINC": LOINC,
    "SCT": SNOMED,
    "SNM": SNOMED,
    "SNM3": SNOMED,
    "SNOMED": SNOMED,
    "SNOMEDCT": SNOMED,
    "UCUM": UCUM,
    "ANS+": UCUM,
    "I10": "http://hl7.org/fhir/sid/icd-10",
    "I10C": "http://hl7.org/fhir/sid/icd-10-cm",
    "I9C": "http://hl7.org/fhir/sid/icd-9-cm",
    "ICD10": "http://hl7.org/fhir/sid/icd-10",
    "CVX": "http://hl7.org/fhir/sid/cvx",
    "NDC": "http://hl7.org/fhir/sid/ndc",
    "ATC": "http://www.whocc.no/atc",
    "RXNORM": "http://www.nlm.nih.gov/research/umls/rxnorm",
    "ISO3166": "urn:iso:std:iso:3166",
    "ISO+": "urn:iso:std:iso:11073:10101",
    "HL70078": V3_INTERPRETATION,
}
# A name matching HL7nnnn (or HL7-nnnn) is a v2 table: http://terminology.hl7.org/CodeSystem/v2-nnnn.
V2_TABLE_NAME = re.compile(r"^HL7-?(\d{4})$", re.IGNORECASE)
# Names that mean "local to the sender": L, LOCAL, 99zzz (table 0396), and empty with a code.
LOCAL_NAME = re.compile(r"^(L|LOCAL|99[A-Z0-9]{1,3})$", re.IGNORECASE)
# The network's own CodeSystem (release tests without a LOINC code) counts as standard:
# a local code mapped to it is mapped, not "unmapped".
NETWORK_CODESYSTEM = "https://plagencell.example.org/fhir/CodeSystem/cgt-lab"
STANDARD_SYSTEMS = frozenset({*CODING_SYSTEMS.values(), NETWORK_CODESYSTEM})

# LOINC codes of the vital signs (FHIR vital-signs profile, R4 §Observation vital signs):
# an OBX with one of them gets the category vital-signs instead of laboratory.
VITAL_SIGNS_LOINC = frozenset({
    "85353-1", "9279-1", "8867-4", "2708-6", "59408-5", "8310-5", "8302-2", "8306-3",
    "9843-4", "8287-5", "29463-7", "3141-9", "3142-7", "8335-2", "39156-5", "85354-9",
    "8480-6", "8462-4", "8478-0",
})
# Facts FHIR-Converter (and the v2-to-FHIR IG's PDA/ACC segment maps) turn into
# Observations: the network's system, the converter's codes (so consumers that know either
# recognise them). PDA-3, PDA-6, PDA-9 and ACC are Y/N indicators (table 0136).
PATIENT_FACTS = "https://plagencell.example.org/fhir/CodeSystem/v2-patient-facts"
YES_NO = {"Y": "Yes", "N": "No"}

# OBX-11 (table 0085) → Observation.status. "" (not valued) → unknown.
OBSERVATION_STATUS: dict[str, str] = {
    "A": "amended",
    "B": "amended",  # appended: IG blank; an addition to a final result is an amendment
    "C": "corrected",
    "D": "entered-in-error",
    "F": "final",
    "I": "registered",  # IG: "registered??"; specimen in lab, result pending
    "N": "cancelled",  # not asked: IG blank; nothing will be reported
    "O": "registered",  # order detail only: IG blank; no result yet
    "P": "preliminary",
    "R": "preliminary",  # entered, not verified: IG blank
    "S": "preliminary",
    "U": "final",  # status change to final without retransmission: IG blank
    "V": "final",  # verified: IG blank
    "W": "entered-in-error",
    "X": "cancelled",  # cannot be obtained: IG blank
    "": "unknown",
}

# OBX-8 (table 0078) codes that exist unchanged in v3-ObservationInterpretation.
INTERPRETATION_V3 = frozenset({
    "<", ">", "A", "AA", "AC", "B", "CAR", "D", "DET", "E", "EX", "EXP", "H", "HH", "HM", "HU",
    "HX", "I", "IE", "IND", "L", "LL", "LU", "LX", "MS", "N", "NCL", "ND", "NEG", "NR", "NS",
    "OBX", "POS", "QCF", "R", "RR", "S", "SDD", "SYN-R", "SYN-S", "TOX", "U", "UNE", "VS", "W",
    "WR", "H>", "L<",
})
INTERPRETATION_DISPLAY: dict[str, str] = {
    "<": "Off scale low", ">": "Off scale high", "A": "Abnormal", "AA": "Critical abnormal",
    "H": "High", "HH": "Critical high", "L": "Low", "LL": "Critical low", "N": "Normal",
    "NEG": "Negative", "POS": "Positive", "DET": "Detected", "ND": "Not detected",
    "I": "Intermediate", "R": "Resistant", "S": "Susceptible", "IND": "Indeterminate",
}

# OBX-2 (table 0125) value types this mapping understands, and the value[x] they produce.
VALUE_TYPES: dict[str, str] = {
    "NM": "valueQuantity",
    "SN": "valueQuantity",  # or valueRange / valueRatio / valueString, from the value
    "CE": "valueCodeableConcept",
    "CWE": "valueCodeableConcept",
    "CNE": "valueCodeableConcept",
    "CF": "valueCodeableConcept",
    "IS": "valueCodeableConcept",
    "ID": "valueCodeableConcept",
    "ST": "valueString",
    "TX": "valueString",
    "FT": "valueString",
    "DT": "valueDateTime",
    "DTM": "valueDateTime",
    "TS": "valueDateTime",
    "TM": "valueTime",
    "NR": "valueRange",
    "DR": "valuePeriod",
    "CQ": "valueQuantity",
}
FREE_TEXT_TYPES = frozenset({"TX", "FT"})

# OBX-6 units: UCUM codes common in the network's labs (CBC, chemistry, flow cytometry,
# cell-product release: viable cells, CD3+/CAR+ counts, volumes, doses).
UCUM_UNITS = frozenset({
    "%", "/uL", "/mL", "/L", "/nL", "10*3/uL", "10*6/uL", "10*9/L", "10*12/L", "10*6/mL",
    "10*6/kg", "10*8", "10*6", "10*9", "{cells}/uL", "{cells}/mL", "{cells}", "{copies}/ug",
    "{copies}/mL", "{ratio}", "1", "g", "mg", "ug", "ng", "pg", "kg", "g/dL", "g/L",
    "mg/dL", "mg/L", "ug/L", "ug/mL", "ng/mL", "ng/L", "pg/mL", "mmol/L", "umol/L", "nmol/L",
    "pmol/L", "mol/L", "meq/L", "U/L", "[IU]/L", "[IU]/mL", "m[IU]/L", "U/mL", "kU/L", "fL",
    "pg/{cell}", "L", "mL", "uL", "dL", "s", "min", "h", "d", "wk", "mo", "a", "cm", "mm",
    "m", "m2", "mm[Hg]", "Cel", "[degF]", "mL/min", "mL/min/{1.73_m2}", "/min", "{beats}/min",
    "mm/h", "kg/m2", "mosm/kg", "[pH]", "mg/kg", "ug/kg", "Gy", "mL/kg", "fmol/L", "kPa",
})
# Spellings labs use for UCUM units (case-sensitive keys; UCUM is case-sensitive).
UNIT_ALIASES: dict[str, str] = {
    "10^3/uL": "10*3/uL", "x10E3/uL": "10*3/uL", "K/uL": "10*3/uL", "10^3/ul": "10*3/uL",
    "10^6/uL": "10*6/uL", "x10E6/uL": "10*6/uL", "M/uL": "10*6/uL", "10^9/L": "10*9/L",
    "10^12/L": "10*12/L", "10^6/kg": "10*6/kg", "10^6/mL": "10*6/mL",
    "cells/uL": "{cells}/uL", "cells/ul": "{cells}/uL", "cells/mL": "{cells}/mL",
    "mEq/L": "meq/L", "IU/L": "[IU]/L", "IU/mL": "[IU]/mL", "mIU/L": "m[IU]/L",
    "mcg/L": "ug/L", "mcg/mL": "ug/mL", "ul": "uL", "ml": "mL", "dl": "dL", "l": "L",
    "sec": "s", "hr": "h", "°C": "Cel", "degC": "Cel", "mmHg": "mm[Hg]", "bpm": "{beats}/min",
    "ratio": "{ratio}",
}


def _check() -> None:
    statuses = {"registered", "preliminary", "final", "amended", "corrected", "cancelled",
                "entered-in-error", "unknown"}
    bad = {k: v for k, v in OBSERVATION_STATUS.items() if v not in statuses}
    if bad:
        raise ValueError(f"table 0085 maps to unknown Observation.status values: {bad}")
    if not all(isinstance(v, str) and v.startswith(("http", "urn:")) for v in
               CODING_SYSTEMS.values()):
        raise ValueError("CODING_SYSTEMS: every system must be a URI")
    missing = {v for v in UNIT_ALIASES.values() if v not in UCUM_UNITS}
    if missing:
        raise ValueError(f"UNIT_ALIASES point outside UCUM_UNITS: {missing}")


_check()
