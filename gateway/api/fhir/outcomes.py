"""OperationOutcome: the only error currency of the FHIR API.

One exception type (``FhirError``), one function from issue code to HTTP status
(``status_for``), one handler (``install_fhir_errors``). Diagnostics never carry patient
data: parameter names, resource types, ids and element paths only.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

import orjson
from fastapi import FastAPI, Request
from fastapi.exception_handlers import http_exception_handler, request_validation_exception_handler
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.responses import JSONResponse, Response

from gateway.errors import (
    Cancelled,
    ConflictError,
    GatewayError,
    Gone,
    NotFound,
    SearchError,
    VersionConflict,
)
from gateway.fhir import FHIR_MEDIA_TYPE

Outcome = dict[str, Any]
log = logging.getLogger(__name__)

# FHIR issue-type code (http://hl7.org/fhir/issue-type) → HTTP status of the response.
_STATUS_BY_CODE: dict[str, int] = {
    "invalid": 400,
    "security": 403,
    "forbidden": 403,
    "login": 401,
    "not-found": 404,
    "not-supported": 405,
    "deleted": 410,
    "conflict": 409,
    "duplicate": 409,
    "multiple-matches": 412,
    "structure": 422,
    "required": 422,
    "value": 422,
    "invariant": 422,
    "business-rule": 422,
    "processing": 422,
    "too-costly": 403,
    "exception": 500,
    "transient": 503,
    "timeout": 504,
    "throttled": 429,
}


def status_for(code: str) -> int:
    """The HTTP status that answers an outcome whose first issue has ``code``."""
    return _STATUS_BY_CODE.get(code, 500)


def issue(code: str, diagnostics: str, *, severity: str = "error",
          expression: list[str] | None = None) -> dict[str, Any]:
    out: dict[str, Any] = {"severity": severity, "code": code, "diagnostics": diagnostics}
    if expression:
        out["expression"] = expression
    return out


def outcome(*issues: dict[str, Any]) -> Outcome:
    return {"resourceType": "OperationOutcome", "issue": list(issues)}


def information(diagnostics: str) -> Outcome:
    return outcome(issue("informational", diagnostics, severity="information"))


class FhirError(Exception):
    """An HTTP answer carrying an OperationOutcome; raised anywhere under ``/fhir``."""

    def __init__(self, status: int, body: Outcome, headers: dict[str, str] | None = None):
        super().__init__(_first_diagnostics(body))
        self.status = status
        self.outcome = body
        self.headers = headers or {}

    @classmethod
    def of(cls, code: str, diagnostics: str, *, status: int | None = None,
           expression: list[str] | None = None) -> FhirError:
        """One-issue error; the status follows from the issue code unless given."""
        body = outcome(issue(code, diagnostics, expression=expression))
        return cls(status if status is not None else status_for(code), body)


def _first_diagnostics(body: Outcome) -> str:
    issues = body.get("issue") or [{}]
    return str(issues[0].get("diagnostics", issues[0].get("code", "error")))


def outcome_response(status: int, body: Outcome, headers: Mapping[str, str] | None = None
                     ) -> Response:
    return Response(orjson.dumps(body), status_code=status, headers=headers,
                    media_type=FHIR_MEDIA_TYPE)


def from_gateway_error(exc: GatewayError) -> FhirError:
    """Translate a store/gateway error at the API boundary (no PHI in the message)."""
    if isinstance(exc, SearchError):
        return FhirError(400, outcome(*exc.issues))
    if isinstance(exc, Cancelled):
        return FhirError.of("timeout", exc.message, status=503)
    if isinstance(exc, VersionConflict):
        return FhirError.of("conflict", exc.message, status=412)
    for kind, code in ((NotFound, "not-found"), (Gone, "deleted"), (ConflictError, "conflict")):
        if isinstance(exc, kind):
            return FhirError.of(code, exc.message)
    return FhirError.of("transient" if exc.retriable else "exception", exc.message)


def _is_fhir_path(request: Request) -> bool:
    return request.url.path.startswith("/fhir")


def _log_server_error(request: Request, status: int, exc: Exception) -> None:
    """Every 5xx leaves a log line: method, path (types and pseudonymous ids), the
    error's message (positions and ids, never values)."""
    if status >= 500:
        log.warning("%s %s answered %d: %s", request.method, request.url.path, status, exc)


def install_fhir_errors(app: FastAPI) -> None:
    """Answer every error under ``/fhir`` with an OperationOutcome of the right status."""

    async def on_fhir_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, FhirError)
        _log_server_error(request, exc.status, exc)
        return outcome_response(exc.status, exc.outcome, exc.headers)

    async def on_http_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, StarletteHTTPException)
        if not _is_fhir_path(request):
            return await http_exception_handler(request, exc)
        code = {404: "not-found", 405: "not-supported", 415: "not-supported",
                406: "not-supported", 413: "too-long"}.get(exc.status_code, "invalid")
        if exc.status_code == 404:
            detail = f"no FHIR interaction at {request.method} {request.url.path}"
        else:
            detail = str(exc.detail)
        return outcome_response(exc.status_code, outcome(issue(code, detail)), exc.headers)

    async def on_validation_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, RequestValidationError)
        if not _is_fhir_path(request):
            return await request_validation_exception_handler(request, exc)
        issues = [issue("invalid", str(e.get("msg")),
                        expression=[".".join(str(p) for p in e.get("loc", ()))])
                  for e in exc.errors()]
        return outcome_response(400, outcome(*issues))

    async def on_gateway_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, GatewayError)
        err = from_gateway_error(exc)
        _log_server_error(request, err.status, exc)
        if not _is_fhir_path(request):  # other routers keep FastAPI's error shape
            return JSONResponse({"detail": str(err)}, status_code=err.status)
        return outcome_response(err.status, err.outcome)

    app.add_exception_handler(FhirError, on_fhir_error)
    app.add_exception_handler(StarletteHTTPException, on_http_error)
    app.add_exception_handler(RequestValidationError, on_validation_error)
    app.add_exception_handler(GatewayError, on_gateway_error)
