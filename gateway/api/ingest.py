"""HTTP edge for HL7 v2: ``POST /hl7v2`` (body: one ER7 message; response: the ACK in ER7).

Status follows the application outcome: 200 for AA/CA, 422 for AE, 400 for AR. A batch
(FHS/BHS…BTS/FTS) is answered with a batch of acknowledgments; its status is the worst one.
"""

from __future__ import annotations

from datetime import UTC, datetime

from fastapi import APIRouter, Request, Response

from gateway.hl7 import batch
from gateway.ingest import IngestService
from gateway.security import principal_of, senders

ER7_MEDIA_TYPES = ("x-application/hl7-v2+er7", "text/plain", "application/hl7-v2")
STATUS_FOR_ACK = {"AA": 200, "CA": 200, "AE": 422, "CE": 422, "AR": 400, "CR": 400}


def hl7v2_router(service: IngestService) -> APIRouter:
    router = APIRouter(tags=["HL7 v2"])

    @router.post("/hl7v2", summary="Receive one HL7 v2 message (ER7); answers its ACK")
    async def receive(request: Request) -> Response:
        media = request.headers.get("content-type", "").split(";")[0].strip().lower()
        if media and media not in ER7_MEDIA_TYPES:
            return Response("content type must be x-application/hl7-v2+er7 or text/plain\n",
                            status_code=415, media_type="text/plain")
        body = await request.body()
        principal = principal_of(request)
        if not principal.anonymous and (refused := senders.refusal(
                service.network, body, principal.may_send_for, f"client {principal.client_id}")):
            return Response(senders.refused_ack(*refused), status_code=400,
                            media_type="x-application/hl7-v2+er7")
        if batch.is_batch(body):
            code, answer = await batch.handle_batch(service, body, "http", datetime.now(UTC))
            return Response(answer, status_code=STATUS_FOR_ACK.get(code, 500),
                            media_type="x-application/hl7-v2+er7")
        outcome = await service.handle(body, transport="http")
        if outcome.inbox_id is not None:  # the audit trail names the stored message
            request.state.audit = {"entity": [f"inbox/{outcome.inbox_id}"]}
        status = STATUS_FOR_ACK.get(outcome.ack_code, 500)
        return Response(b"\r\n".join(outcome.responses), status_code=status,
                        media_type="x-application/hl7-v2+er7")

    return router
