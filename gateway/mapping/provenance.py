"""One Provenance per inbound message: what it produced, who sent it, which mapping made it.

- id: deterministic from (site, MSH-3, MSH-10), so a resent message updates its Provenance;
- target: every resource the message produced, as version-agnostic references;
- agent: the site's Organization (author);
- entity (role ``source``): the inbound message, identified by MSH-10 within the sending
  facility (a message control id, not patient data);
- recorded: the instant the gateway received the message;
- policy: the mapping version (``urn:plagencell:mapping:<MAPPING_VERSION>``).
"""

from __future__ import annotations

from collections.abc import Iterable

from gateway.hl7.parser import Message
from gateway.mapping.context import MAPPING_VERSION, MappingContext, Resource
from gateway.mapping.organization import organization_reference

PARTICIPANT_TYPE = "http://terminology.hl7.org/CodeSystem/provenance-participant-type"
DATA_OPERATION = "http://terminology.hl7.org/CodeSystem/v3-DataOperation"
MAPPING_POLICY = f"urn:plagencell:mapping:{MAPPING_VERSION}"


def message_identifier(site_id: str, message: Message) -> Resource:
    """The inbound message as an Identifier: MSH-10 in the sending facility's namespace."""
    facility = message.sending_facility or "unknown"
    return {"system": f"urn:plagencell:site:{site_id}:hl7v2:{_urn_safe(facility)}:msh-10",
            "value": message.control_id or "unknown"}


def _urn_safe(text: str) -> str:
    return "".join(ch if ch.isalnum() or ch in "-._" else "_" for ch in text)


def provenance(ctx: MappingContext, targets: Iterable[Resource]) -> Resource:
    msg = ctx.message
    return {
        "resourceType": "Provenance",
        "id": ctx.rid("Provenance", msg.sending_application, msg.control_id),
        "target": [{"reference": f"{r['resourceType']}/{r['id']}"} for r in targets],
        "recorded": ctx.received,
        "policy": [MAPPING_POLICY],
        "activity": {"coding": [{"system": DATA_OPERATION, "code": "UPDATE",
                                 "display": "revise"}]},
        "agent": [{"type": {"coding": [{"system": PARTICIPANT_TYPE, "code": "author",
                                        "display": "Author"}]},
                   "who": organization_reference(ctx.site)}],
        "entity": [{"role": "source",
                    "what": {"identifier": message_identifier(ctx.site.id, msg),
                             "display": f"HL7 v2 {msg.message_type} {msg.version}".strip()}}],
    }
