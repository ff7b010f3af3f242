"""HTTP conformance: media types, ``_format``, ``Prefer``, ETag / Last-Modified headers.

Responses are ``application/fhir+json; fhirVersion=4.0`` bytes serialised once with
orjson. XML is not served (406); a request body in any media type other than FHIR JSON
is refused (415).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from email.utils import format_datetime, parsedate_to_datetime
from typing import Any

import orjson
from starlette.requests import Request
from starlette.responses import Response

from gateway.api.limits import MAX_JSON_DEPTH, MAX_URL, json_depth_exceeds
from gateway.fhir import FHIR_MEDIA_TYPE

from .outcomes import FhirError, information

JSON_FORMATS = frozenset({"json", "application/json", "application/fhir+json",
                          "application/json+fhir"})
XML_FORMATS = frozenset({"xml", "text/xml", "application/xml", "application/fhir+xml",
                         "application/xml+fhir"})
BODY_TYPES = frozenset({"application/fhir+json", "application/json", "application/json+fhir"})
FORM_TYPE = "application/x-www-form-urlencoded"


def _base_type(value: str) -> str:
    return value.split(";", 1)[0].strip().lower()


def check_format(request: Request) -> None:
    """414 for a URL beyond ``MAX_URL``; 406 when the client asks for anything but JSON
    (``_format`` or ``Accept``)."""
    scope = request.scope
    if len(scope.get("raw_path") or b"") + len(scope.get("query_string") or b"") > MAX_URL:
        raise FhirError.of("too-long", f"request URL longer than {MAX_URL} bytes; send "
                           "long searches as POST [type]/_search (form body)", status=414)
    fmt = request.query_params.get("_format")
    if fmt is not None:
        _check_format_param(fmt)
        return
    accept = request.headers.get("accept")
    if accept and not _accepts_json(accept):
        raise FhirError.of("not-supported", f"cannot produce {accept}; this server speaks "
                           "application/fhir+json only", status=406)


def _check_format_param(fmt: str) -> None:
    base = _base_type(fmt.replace(" ", "+"))
    if base not in JSON_FORMATS:
        kind = "XML" if base in XML_FORMATS else f"_format={fmt}"
        raise FhirError.of("not-supported", f"{kind} is not supported; use "
                           "_format=json or application/fhir+json", status=406)


def _accepts_json(accept: str) -> bool:
    types = [_base_type(part) for part in accept.split(",")]
    if any(t in JSON_FORMATS or t in ("*/*", "application/*") for t in types):
        return True
    # browsers and generic clients (text/html, text/plain) still get JSON; only an
    # explicit request for XML alone is refused
    return not any(t in XML_FORMATS for t in types)


def check_body_type(request: Request, *, form: bool = False) -> None:
    """415 for a body that is not FHIR JSON (or, for ``_search``, a form)."""
    ctype = _base_type(request.headers.get("content-type", ""))
    allowed = {FORM_TYPE} if form else BODY_TYPES
    if ctype == "" and not form:
        return  # clients that omit the header get the benefit of the doubt
    if ctype not in allowed:
        expected = FORM_TYPE if form else "application/fhir+json"
        raise FhirError.of("not-supported", f"request body media type {ctype or '(none)'} "
                           f"is not supported; send {expected}", status=415)


async def read_json(request: Request) -> dict[str, Any]:
    check_body_type(request)
    raw = await request.body()
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise FhirError.of("structure", f"request body is not JSON: {exc.msg} at "
                           f"position {exc.pos}", status=400) from exc
    if json_depth_exceeds(body):
        raise FhirError.of("structure", f"request body nests deeper than {MAX_JSON_DEPTH} "
                           "levels", status=400)
    if not isinstance(body, dict) or not isinstance(body.get("resourceType"), str):
        raise FhirError.of("structure", "request body must be a FHIR resource with "
                           "resourceType", status=400, expression=["resourceType"])
    return body


@dataclass(frozen=True, slots=True)
class Prefer:
    """The ``Prefer`` header (RFC 7240) as far as FHIR uses it."""

    return_: str = "representation"  # minimal | representation | OperationOutcome
    strict: bool = False

    @classmethod
    def parse(cls, header: str | None) -> Prefer:
        values: dict[str, str] = {}
        for part in (header or "").replace(";", ",").split(","):
            key, _, val = part.strip().partition("=")
            values[key.strip().lower()] = val.strip().strip('"')
        ret = values.get("return", "representation")
        if ret not in ("minimal", "representation", "OperationOutcome"):
            ret = "representation"
        return cls(return_=ret, strict=values.get("handling") == "strict")


def prefer(request: Request) -> Prefer:
    return Prefer.parse(request.headers.get("prefer"))


def fhir_response(body: Any, status: int = 200, headers: dict[str, str] | None = None
                  ) -> Response:
    content = body if isinstance(body, bytes) else orjson.dumps(body)
    return Response(content, status_code=status, headers=headers, media_type=FHIR_MEDIA_TYPE)


def etag(version_id: str | int) -> str:
    return f'W/"{version_id}"'


def parse_etag(value: str) -> str:
    """``W/"3"`` or ``"3"`` or ``3`` → ``3``."""
    value = value.strip()
    if value.startswith("W/"):
        value = value[2:]
    return value.strip('"')


def http_date(instant: str) -> str:
    return format_datetime(datetime.fromisoformat(instant.replace("Z", "+00:00")), usegmt=True)


def version_headers(resource: dict[str, Any]) -> dict[str, str]:
    meta = resource.get("meta") or {}
    return headers_for(meta.get("versionId"), meta.get("lastUpdated"))


def headers_for(version_id: str | None, last_updated: str | None) -> dict[str, str]:
    headers: dict[str, str] = {}
    if version_id:
        headers["ETag"] = etag(version_id)
    if last_updated:
        headers["Last-Modified"] = http_date(last_updated)
    return headers


def not_modified(request: Request, version_id: str, last_updated: str) -> bool:
    """``If-None-Match`` / ``If-Modified-Since`` say the client's copy is current."""
    inm = request.headers.get("if-none-match")
    if inm is not None:
        tags = {parse_etag(t) for t in inm.split(",")}
        return "*" in tags or version_id in tags
    ims = request.headers.get("if-modified-since")
    if ims and last_updated:
        return _not_modified_since(ims, last_updated)
    return False


def _not_modified_since(header: str, last_updated: str) -> bool:
    try:
        since = parsedate_to_datetime(header)
    except (TypeError, ValueError):
        return False
    updated = datetime.fromisoformat(last_updated.replace("Z", "+00:00"))
    return updated.replace(microsecond=0) <= since


def write_response(request: Request, resource: dict[str, Any] | None, status: int,
                   headers: dict[str, str], message: str) -> Response:
    """The answer to a create/update honouring ``Prefer: return=…``."""
    ret = prefer(request).return_
    if ret == "minimal" or resource is None:
        return Response(b"", status_code=status, headers=headers)
    if ret == "OperationOutcome":
        return fhir_response(information(message), status, headers)
    return fhir_response(resource, status, headers)
