"""Real FHIR clients against the real server: fhirpy (async) and fhirclient (SMART)."""

from __future__ import annotations

import uuid

import pytest
from fhirclient import client as smart_client
from fhirclient.models.observation import Observation as SmartObservation
from fhirclient.models.patient import Patient as SmartPatient
from fhirpy import AsyncFHIRClient
from fhirpy.base.exceptions import OperationOutcome, ResourceNotFound

from .conftest import Served


async def test_fhirpy_creates_searches_reads_updates_and_deletes(shared_server: Served):
    fhir = AsyncFHIRClient(shared_server.base)
    mrn = uuid.uuid4().hex
    patient = fhir.resource("Patient", gender="female",
                            identifier=[{"system": "urn:test:fhirpy", "value": mrn}])
    await patient.save()
    assert patient["id"] and patient["meta"]["versionId"] == "1"
    observation = fhir.resource("Observation", status="final", code={"text": "Hb"},
                                subject=patient.to_reference(),
                                valueQuantity={"value": 12.5, "unit": "g/dL"})
    await observation.save()
    found = await fhir.resources("Observation").search(subject=patient["id"]).fetch_all()
    assert [o["id"] for o in found] == [observation["id"]]
    by_identifier = await fhir.resources("Patient").search(
        identifier=f"urn:test:fhirpy|{mrn}").first()
    assert by_identifier["id"] == patient["id"]
    read = await fhir.reference("Patient", patient["id"]).to_resource()
    assert read["gender"] == "female"
    patient["gender"] = "male"
    await patient.save()
    assert patient["meta"]["versionId"] == "2"
    assert await fhir.resources("Patient").search(_id=patient["id"]).count() == 1
    await observation.delete()
    with pytest.raises((ResourceNotFound, OperationOutcome)):
        await fhir.reference("Observation", observation["id"]).to_resource()


async def test_fhirpy_gets_operation_outcomes_for_invalid_resources(shared_server: Served):
    fhir = AsyncFHIRClient(shared_server.base)
    with pytest.raises(OperationOutcome) as caught:
        await fhir.resource("Observation", status="unknown-status", code={"text": "x"}).save()
    assert "Observation.status" in str(caught.value)


def test_fhirclient_reads_the_capability_creates_searches_and_reads(shared_server: Served):
    smart = smart_client.FHIRClient(settings={"app_id": "gateway-tests",
                                              "api_base": shared_server.base})
    smart.prepare()  # fetches and parses /metadata with fhirclient's R4 models
    assert smart.server.capabilityStatement.fhirVersion == "4.0.1"
    mrn = uuid.uuid4().hex
    patient = SmartPatient({"gender": "female",
                            "identifier": [{"system": "urn:test:smart", "value": mrn}]})
    created = patient.create(smart.server)
    assert created["resourceType"] == "Patient"
    pid = created["id"]
    observation = SmartObservation({"status": "final", "code": {"text": "WBC"},
                                    "subject": {"reference": f"Patient/{pid}"}})
    observation.create(smart.server)
    search = SmartObservation.where(struct={"subject": f"Patient/{pid}"})
    results = search.perform_resources(smart.server)
    assert [r.subject.reference for r in results] == [f"Patient/{pid}"]
    read = SmartPatient.read(pid, smart.server)
    assert read.identifier[0].value == mrn
    assert read.meta.versionId == "1"
