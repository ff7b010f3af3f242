"""Per-study pseudonyms on export: the data-minimisation option for study recipients.

In a study's export (``GET /fhir/Group/{id}/$export?pseudonymize=study``) every Patient id,
and every reference to a Patient, is replaced by

    HMAC-SHA256(study key, "Patient|<network patient id>")  (hex, 64 characters)
    study key = HMAC-SHA256(network pseudonym key, "export-study|<ResearchStudy id>")

The same patient gets the same pseudonym in every export of the same study (the recipient
can follow a subject across exports), and different, unlinkable pseudonyms in two studies:
relating them needs the network key, which never leaves the gateway. Patient resources also
lose what would link them back (``identifier``: the network pseudonym; ``link``; ``text``).
"""

from __future__ import annotations

import hashlib
import hmac
import re

import orjson

_PATIENT_REFERENCE = re.compile(rb'(Patient/)([A-Za-z0-9\-.]{1,64})(?=["/])')
DROPPED = ("identifier", "link", "text")


def study_key(network_key: bytes, study_id: str) -> bytes:
    return hmac.new(network_key, f"export-study|{study_id}".encode(), hashlib.sha256).digest()


class StudyPseudonyms:
    """Rewrites stored resource JSON (one NDJSON line) for one study."""

    def __init__(self, network_key: bytes, study_id: str) -> None:
        self._key = study_key(network_key, study_id)
        self._cache: dict[bytes, bytes] = {}

    def of(self, patient_id: str) -> str:
        return self._of(patient_id.encode()).decode()

    def _of(self, patient_id: bytes) -> bytes:
        found = self._cache.get(patient_id)
        if found is None:
            if len(self._cache) > 100_000:  # bounded: a cohort is far smaller
                self._cache.clear()
            found = self._cache[patient_id] = hmac.new(
                self._key, b"Patient|" + patient_id, hashlib.sha256).hexdigest().encode()
        return found

    def apply(self, resource_type: str, content: bytes) -> bytes:
        if resource_type == "Patient":
            patient = orjson.loads(content)
            patient["id"] = self.of(patient["id"])
            for name in DROPPED:
                patient.pop(name, None)
            content = orjson.dumps(patient)
        return _PATIENT_REFERENCE.sub(lambda m: m.group(1) + self._of(m.group(2)), content)
