"""Bundles the server answers with: history, batch/transaction responses."""

from __future__ import annotations

from http import HTTPStatus
from typing import Any

from gateway.store import Resource, now_instant

from .interactions import Result, new_id
from .negotiation import http_date


def status_line(status: int) -> str:
    return f"{status} {HTTPStatus(status).phrase}"


def response_entry(result: Result, base: str, *, minimal: bool = False) -> dict[str, Any]:
    """A batch/transaction response entry for one interaction's result."""
    response: dict[str, Any] = {"status": status_line(result.status)}
    resource = result.resource
    if result.location:
        response["location"] = f"{base}/{result.location}"
    if resource is not None:
        meta = resource.get("meta") or {}
        if "versionId" in meta:
            response["etag"] = f'W/"{meta["versionId"]}"'
        if "lastUpdated" in meta:
            response["lastModified"] = meta["lastUpdated"]
    entry: dict[str, Any] = {"response": response}
    if resource is not None:
        entry["fullUrl"] = f"{base}/{resource['resourceType']}/{resource['id']}"
        if not minimal:
            entry["resource"] = resource
    return entry


def history_entry(resource: Resource, deleted: bool, base: str) -> dict[str, Any]:
    rtype, rid = resource["resourceType"], resource["id"]
    meta = resource.get("meta") or {}
    version = str(meta.get("versionId", ""))
    url = f"{base}/{rtype}/{rid}"
    if deleted:
        return {"fullUrl": url, "request": {"method": "DELETE", "url": f"{rtype}/{rid}"},
                "response": {"status": "410 Gone", "etag": f'W/"{version}"'}}
    method, status = ("POST", "201 Created") if version == "1" else ("PUT", "200 OK")
    return {"fullUrl": url, "resource": resource,
            "request": {"method": method, "url": f"{rtype}/{rid}" if method == "PUT" else rtype},
            "response": {"status": status, "etag": f'W/"{version}"',
                         "lastModified": meta.get("lastUpdated")}}


def history_bundle(versions: list[tuple[Resource, bool]], base: str, self_url: str
                   ) -> dict[str, Any]:
    """``versions``: (resource or its ``{resourceType, id, meta}`` stub, deleted?)."""
    return {"resourceType": "Bundle", "id": new_id(), "meta": {"lastUpdated": now_instant()},
            "type": "history", "total": len(versions),
            "link": [{"relation": "self", "url": self_url}],
            "entry": [history_entry(v, deleted, base) for v, deleted in versions]}


__all__ = ["history_bundle", "http_date", "response_entry", "status_line"]
