"""Organization per site: the sender of every message, the agent of every Provenance, the
managing organization of the Patients it sends."""

from __future__ import annotations

from gateway.adapters.site import Site
from gateway.mapping.context import Resource, resource_id

SITE_SYSTEM = "urn:plagencell:site"
ORGANIZATION_TYPE = "http://terminology.hl7.org/CodeSystem/organization-type"
# Hospitals are healthcare providers; academic cell factories (GMP manufacturing
# facilities) have no code of their own in the R4 organization-type system: "other".
KIND_TYPE = {"hospital": ("prov", "Healthcare Provider"), "cell-factory": ("other", "Other")}


def organization_id(site: Site) -> str:
    return resource_id("Organization", site.id)


def organization_reference(site: Site) -> dict[str, str]:
    return {"reference": f"Organization/{organization_id(site)}"}


def organization(site: Site) -> Resource:
    code, display = KIND_TYPE[site.kind]
    org: Resource = {
        "resourceType": "Organization",
        "id": organization_id(site),
        "identifier": [{"system": SITE_SYSTEM, "value": site.id}],
        "active": True,
        "type": [{"coding": [{"system": ORGANIZATION_TYPE, "code": code, "display": display}],
                  "text": site.kind}],
        "name": site.name,
    }
    if site.city:
        org["address"] = [{"city": site.city, "country": "IT"}]
    return org
