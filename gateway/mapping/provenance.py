"""One Provenance per inbound message: what it produced, who sent it, which mapping made it.

- id: deterministic from (site, MSH-3, keyed hash of MSH-10), so a resent message updates
  its Provenance, and the id cannot be reversed by hashing guessed control ids;
- target: every resource the message produced, as version-agnostic references;
- agent: the site's Organization (author);
- entity (role ``source``): the inbound message, identified by the keyed hash of MSH-10
  within the sending facility (control ids often embed patient or accession numbers);
- recorded: the instant the gateway received the message;
- policy: the mapping version (``urn:plagencell:mapping:<MAPPING_VERSION>``).
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Iterable

from gateway.mapping.context import MAPPING_VERSION, MappingContext, Resource
from gateway.mapping.organization import organization_reference

PARTICIPANT_TYPE = "http://terminology.hl7.org/CodeSystem/provenance-participant-type"
DATA_OPERATION = "http://terminology.hl7.org/CodeSystem/v3-DataOperation"
MAPPING_POLICY = f"urn:plagencell:mapping:{MAPPING_VERSION}"
MESSAGE_SYSTEM = "urn:plagencell:hashed:msh-10"


def message_hash(key: bytes, site: str, facility: str, control_id: str) -> str:
    """The keyed hash of (site, MSH-4, MSH-10): how MSH-10 leaves the edge (Provenance,
    the bus header ``message-id``). Keyed, so a control id built from an MRN cannot be
    found by hashing guesses; the edge, holding the key, finds the message from it."""
    text = "|".join(("msh-10", site, facility, control_id)).encode("utf-8")
    return hmac.new(key, text, hashlib.sha256).hexdigest()


def message_identifier(ctx: MappingContext) -> Resource:
    """The inbound message as an Identifier: the keyed hash of (site, MSH-4, MSH-10).

    Hashed, not in clear: senders build control ids from accession and patient numbers
    (the corpus has "<timestamp>_<patient id>"). The edge finds the message from the hash by
    hashing the MSH-10 of its inbox record with the same key."""
    msg = ctx.message
    return {"system": MESSAGE_SYSTEM,
            "value": message_hash(ctx.pseudonym_key, ctx.site.id, msg.sending_facility,
                                  msg.control_id)}


def provenance(ctx: MappingContext, targets: Iterable[Resource]) -> Resource:
    msg = ctx.message
    return {
        "resourceType": "Provenance",
        "id": ctx.rid("Provenance", msg.sending_application,
                      message_hash(ctx.pseudonym_key, ctx.site.id, msg.sending_facility,
                                   msg.control_id)),
        "target": [{"reference": f"{r['resourceType']}/{r['id']}"} for r in targets],
        "recorded": ctx.received,
        "policy": [MAPPING_POLICY],
        "activity": {"coding": [{"system": DATA_OPERATION, "code": "UPDATE",
                                 "display": "revise"}]},
        "agent": [{"type": {"coding": [{"system": PARTICIPANT_TYPE, "code": "author",
                                        "display": "Author"}]},
                   "who": organization_reference(ctx.site)}],
        "entity": [{"role": "source",
                    "what": {"identifier": message_identifier(ctx),
                             "display": f"HL7 v2 {msg.message_type} {msg.version}".strip()}}],
    }
