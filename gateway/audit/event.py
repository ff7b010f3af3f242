"""One HTTP request → one FHIR R4 AuditEvent (IHE Basic Audit Log Patterns, BALP). Pure.

The middleware collects the facts of a request (``Facts``: method, path, query, status,
who, when, what the endpoint added in ``request.state.audit``); ``audit_event`` turns them
into the AuditEvent on the trail's writer thread, off the request's path.

* FHIR interaction: ``type`` audit-event-type ``rest``; ``subtype`` restful-interaction
  (read, vread, search-type, create, …, operation, with the operation's name beside it).
* ``POST /auth/token``: ``type`` DCM 110114 User Authentication, ``subtype`` DCM 110122 Login.
* other gateway endpoints: ``type`` ``rest``, ``subtype`` from the gateway-activity code
  system (hl7v2-ingest, message-search, replay, reload, …).
* ``action``: C create, R read/vread/history, U update/patch, D delete, E the rest.
* ``outcome``: 0 (2xx/3xx), 4 (4xx: refused, not found, invalid), 8 (5xx).
* ``agent``: the client (DCM 110153 Source Role ID, ``requestor``, its network address)
  and this node (DCM 110152 Destination Role ID); ``source``: this node as observer
  (security-source-type 4, Application Server).
* ``entity``: resources as references (role 4 Domain Resource; a Patient: type 1 Person,
  role 1 Patient), the query (role 24 Query, base64, as BALP says).

Privacy: an event holds the client id, resource ids (pseudonymous) and the query string,
never a body. A query parameter that can carry identity (identifier, name, birthdate,
telecom, address, free text; also inside chains and ``_has``) keeps its name but its value
becomes ``hmac-sha256:<16 hex>``, keyed with the node's pseudonym key: an auditor who holds
the key can check whether a given value was searched for; nobody can read it back.
"""

from __future__ import annotations

import base64
import functools
import hashlib
import hmac
import re
import time
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl, quote

Event = dict[str, Any]

AUDIT_TYPE = "http://terminology.hl7.org/CodeSystem/audit-event-type"
RESTFUL = "http://hl7.org/fhir/restful-interaction"
DCM = "http://dicom.nema.org/resources/ontology/DCM"
ACTIVITY = "https://plagencell.example.org/fhir/CodeSystem/gateway-activity"
ENTITY_TYPE = "http://terminology.hl7.org/CodeSystem/audit-entity-type"
OBJECT_ROLE = "http://terminology.hl7.org/CodeSystem/object-role"
SOURCE_TYPE = "http://terminology.hl7.org/CodeSystem/security-source-type"
CLIENT_SYSTEM = "urn:plagencell:client"
NODE_SYSTEM = "urn:plagencell:node"

REST = {"system": AUDIT_TYPE, "code": "rest", "display": "Restful Operation"}
LOGIN_TYPE = {"system": DCM, "code": "110114", "display": "User Authentication"}
LOGIN = {"system": DCM, "code": "110122", "display": "Login"}
RESTFUL_CODES = frozenset(
    "read vread update patch delete history history-instance history-type history-system "
    "create search search-type search-system capabilities transaction batch operation".split())
ACTIONS = {"create": "C", "read": "R", "vread": "R", "history-instance": "R",
           "history-type": "R", "history-system": "R", "capabilities": "R",
           "update": "U", "patch": "U", "delete": "D"}  # everything else: E (execute)
# parameters whose values may identify a person (R4 Patient/Person/RelatedPerson names)
IDENTITY_PARAMS = frozenset(
    "identifier name family given phonetic birthdate death-date telecom phone email address "
    "address-city address-country address-postalcode address-state address-use "
    "_content _text _filter _query "
    # MSH-10 of the message browsers (/admin/messages, /console/messages): senders build it
    # from MRNs
    "control_id".split())
SIGNAL = "SIGNAL"  # Facts.method of an action that came by no HTTP request
ANONYMOUS = "anonymous"
UNAUTHENTICATED = "unauthenticated"
_TYPE = re.compile(r"^[A-Z][A-Za-z]{1,63}$")
_REFERENCE = re.compile(r"^[A-Z][A-Za-z]{1,63}/[A-Za-z0-9\-.]{1,64}(/_history/[0-9]{1,9})?$")


@dataclass(slots=True)
class Facts:
    """What the middleware saw of one request (cheap to collect: no formatting)."""

    method: str
    path: str
    query: str
    status: int
    agent: str  # client id, "anonymous", "unauthenticated"
    address: str | None = None  # the client's network address
    when: float = 0.0  # epoch seconds, when the response was sent
    details: dict[str, Any] | None = None  # request.state.audit


Codes = tuple[tuple[str, str], ...]  # (system, code) pairs


@dataclass(slots=True)
class Interaction:
    type: dict[str, str]
    codes: Codes  # the subtype codings, as hashable pairs (see ``subtype``)
    action: str
    entities: list[str] = field(default_factory=list)

    @property
    def subtype(self) -> tuple[dict[str, str], ...]:
        return _codings(self.codes)


_DISPLAYS = {(DCM, "110122"): "Login"}


@functools.lru_cache(maxsize=512)
def _codings(codes: Codes) -> tuple[dict[str, str], ...]:
    """The subtype codings (shared between events: never changed once built)."""
    return tuple({"system": system, "code": code,
                  **({"display": d} if (d := _DISPLAYS.get((system, code))) else {})}
                 for system, code in codes)


@functools.lru_cache(maxsize=512)
def _column(codes: Codes) -> str:
    """A "\\nsystem|code\\n…" search column (``gateway.audit.chain.columns``)."""
    return "\n" + "".join(f"{system}|{code}\n" for system, code in codes)


# -- what was done ---------------------------------------------------------------------------

def _restful(code: str, entities: list[str] | None = None) -> Interaction:
    return Interaction(REST, ((RESTFUL, code),), ACTIONS.get(code, "E"), entities or [])


def _activity(code: str, action: str, entities: list[str] | None = None) -> Interaction:
    return Interaction(REST, ((ACTIVITY, code),), action, entities or [])


def _operation(name: str, entities: list[str] | None = None) -> Interaction:
    return Interaction(REST, ((RESTFUL, "operation"), (ACTIVITY, name)), "E", entities or [])


_TYPE_LEVEL = {("GET", ""): "search-type", ("POST", "_search"): "search-type",
               ("GET", "_history"): "history-type"}
_BY_METHOD = {"POST": "create", "PUT": "update", "PATCH": "patch", "DELETE": "delete",
              "GET": "search-type"}
_INSTANCE = {"GET": "read", "PUT": "update", "PATCH": "patch", "DELETE": "delete"}
_SYSTEM = {("GET", ""): "search-system", ("POST", ""): "transaction",
           ("GET", "metadata"): "capabilities", ("GET", "_history"): "history-system",
           ("POST", "_search"): "search-system", ("GET", ".well-known"): "capabilities"}


def fhir_interaction(method: str, parts: list[str]) -> Interaction:
    """The restful-interaction of ``method`` on ``/fhir/<parts>``."""
    if parts and parts[-1].startswith("$"):
        on = [f"{parts[0]}/{parts[1]}"] if len(parts) == 3 and _TYPE.match(parts[0]) else None
        return _operation(parts[-1], on)
    if not parts or not _TYPE.match(parts[0]):
        code = _SYSTEM.get((method, parts[0] if parts else ""))
        return _restful(code) if code else _activity("fhir-request", "E")
    rtype, rest = parts[0], parts[1:]
    if not rest:
        return _restful(_BY_METHOD.get(method, "search-type"))
    if len(rest) == 1 and rest[0] in ("_search", "_history"):
        return _restful(_TYPE_LEVEL.get((method, rest[0]), "search-type"))
    ref = f"{rtype}/{rest[0]}"
    if len(rest) == 1:
        return _restful(_INSTANCE.get(method, "read"), [ref])
    if rest[1] == "_history":
        if len(rest) == 2:
            return _restful("history-instance", [ref])
        return _restful("vread", [f"{ref}/_history/{rest[2]}"])
    return _activity("fhir-request", "E", [ref])


_GATEWAY = [  # (method, path pattern) → gateway-activity code, action
    ("POST", re.compile(r"^/hl7v2$"), "hl7v2-ingest", "C"),
    ("POST", re.compile(r"^/lab-exports"), "lab-export-ingest", "C"),
    ("GET", re.compile(r"^/admin/messages$"), "message-search", "E"),
    ("GET", re.compile(r"^/admin/messages/(?P<id>[^/]+)$"), "message-read", "R"),
    ("POST", re.compile(r"^/admin/messages/(?P<id>[^/]+)/replay$"), "replay", "E"),
    ("POST", re.compile(r"^/admin/reload$"), "reload", "E"),
    ("GET", re.compile(r"^/admin/messages/(?P<id>[^/]+)/raw$"), "message-read", "R"),
    ("GET", re.compile(r"^/console/messages$"), "message-search", "E"),
    ("GET", re.compile(r"^/console/messages/(?P<id>[^/]+)(/raw)?$"), "message-read", "R"),
    ("POST", re.compile(r"^/console/messages/(?P<id>[^/]+)/replay$"), "replay", "E"),
    ("POST", re.compile(r"^/console/replay$"), "replay", "E"),
]


def interaction(method: str, path: str) -> Interaction:
    """What a request did, from its method and path alone."""
    if path == "/fhir" or path.startswith("/fhir/"):
        return fhir_interaction(method, [p for p in path[5:].split("/") if p])
    if method == SIGNAL:  # no HTTP request: the path names the activity
        return _activity(path, "E")
    if path == "/auth/token":
        return Interaction(LOGIN_TYPE, ((DCM, LOGIN["code"]),), "E")
    for verb, pattern, code, action in _GATEWAY:
        if method == verb and (match := pattern.match(path)):
            ids = match.groupdict()
            return _activity(code, action, [f"inbox/{ids['id']}"] if "id" in ids else None)
    admin = path.startswith("/admin")
    return _activity("admin-request" if admin else "http-request",
                     "R" if method in ("GET", "HEAD") else "E")


def _override(found: Interaction, subtype: str) -> None:
    if subtype in RESTFUL_CODES:
        found.codes = ((RESTFUL, subtype), *found.codes[1:])
        found.action = ACTIONS.get(subtype, "E")
    elif subtype not in {code for _, code in found.codes}:
        found.codes = (*found.codes, (ACTIVITY, subtype))


# -- privacy ---------------------------------------------------------------------------------

def _identity_param(name: str) -> bool:
    return any(part in IDENTITY_PARAMS for part in re.split(r"[.:]", name))


def scrub_query(query: str, key: bytes) -> str:
    """The query string with every identity-bearing value replaced by its keyed hash."""
    if not query:
        return ""
    pairs = parse_qsl(query, keep_blank_values=True)
    out = []
    for name, value in pairs:
        if _identity_param(name) and value:
            digest = hmac.new(key, b"audit|" + value.encode(), hashlib.sha256).hexdigest()
            value = f"hmac-sha256:{digest[:16]}"
        out.append(f"{quote(name, safe='_:.-')}={quote(value, safe='|:,._-/$')}")
    return "&".join(out)


# -- the AuditEvent --------------------------------------------------------------------------

def outcome_of(status: int) -> str:
    """R4 AuditEvent.outcome: 0 success, 4 minor failure (refused, not found, invalid),
    8 serious failure (the server failed). 12 (major failure) is not used by this server."""
    if status < 400:
        return "0"
    return "4" if status < 500 else "8"


_SYSTEM_OBJECT = {"system": ENTITY_TYPE, "code": "2", "display": "System Object"}
_PERSON = {"system": ENTITY_TYPE, "code": "1", "display": "Person"}
_DOMAIN_RESOURCE = {"system": OBJECT_ROLE, "code": "4", "display": "Domain Resource"}
_PATIENT = {"system": OBJECT_ROLE, "code": "1", "display": "Patient"}
_QUERY = {"system": OBJECT_ROLE, "code": "24", "display": "Query"}
_CLIENT_TYPE = {"coding": [{"system": DCM, "code": "110153", "display": "Source Role ID"}]}
_SERVER_TYPE = {"coding": [{"system": DCM, "code": "110152",
                            "display": "Destination Role ID"}]}


def _recorded(when: float) -> tuple[str, int]:
    """The instant (ms, UTC, ``Z``) and its epoch milliseconds, from one truncation."""
    ms = int(when * 1000)
    seconds, milli = divmod(ms, 1000)
    return f"{time.strftime('%Y-%m-%dT%H:%M:%S', time.gmtime(seconds))}.{milli:03d}Z", ms


def _entity(ref: str) -> Event:
    if _REFERENCE.match(ref):
        person = ref.startswith("Patient/")
        return {"what": {"reference": ref}, "type": _PERSON if person else _SYSTEM_OBJECT,
                "role": _PATIENT if person else _DOMAIN_RESOURCE}
    kind, _, value = ref.partition("/")
    return {"what": {"identifier": {"system": f"urn:plagencell:{kind}", "value": value}},
            "type": _SYSTEM_OBJECT, "role": _DOMAIN_RESOURCE}


def _query_entity(path: str, query: str) -> Event:
    text = f"{path}?{query}".encode()
    return {"type": _SYSTEM_OBJECT, "role": _QUERY,
            "query": base64.b64encode(text).decode()}


def _description(facts: Facts) -> str:
    if facts.method == SIGNAL:
        return str((facts.details or {}).get("description") or facts.path)
    return f"HTTP {facts.status}"


class EventBuilder:
    """Builds the AuditEvents of one node, and their search columns (the same values that
    ``gateway.audit.chain.columns`` derives from the content, without parsing it back).
    What is the same in every event of the node is built once and shared."""

    def __init__(self, node: str, key: bytes) -> None:
        self.key = key
        self.clients: dict[tuple[str, str | None], Event] = {}
        self.server = {"type": _SERVER_TYPE, "requestor": False,
                       "who": {"identifier": {"system": NODE_SYSTEM, "value": node}}}
        self.source = {"site": node,
                       "observer": {"identifier": {"system": NODE_SYSTEM, "value": node},
                                    "display": f"gateway node {node}"},
                       "type": [{"system": SOURCE_TYPE, "code": "4",
                                 "display": "Application Server"}]}

    def _client(self, facts: Facts) -> Event:
        """The client agent; shared by the events of one client at one address."""
        known = self.clients.get((facts.agent, facts.address))
        if known is not None:
            return known
        client: Event = {"type": _CLIENT_TYPE, "requestor": True,
                         "who": {"identifier": {"system": CLIENT_SYSTEM, "value": facts.agent}}}
        if facts.address:
            client["network"] = {"address": facts.address, "type": "2"}
        if len(self.clients) >= 4096:
            self.clients.clear()
        self.clients[(facts.agent, facts.address)] = client
        return client

    def build(self, facts: Facts) -> tuple[Event, dict[str, Any]]:
        """The AuditEvent of one request (without ``id``: the trail gives it when it
        appends) and its search columns."""
        details = facts.details or {}
        found = interaction(facts.method, facts.path)
        if isinstance(details.get("subtype"), str) and facts.method != SIGNAL:
            _override(found, details["subtype"])
        refs = list(dict.fromkeys(str(e) for e in details.get("entity") or ())) \
            or found.entities
        query = details.get("query") if isinstance(details.get("query"), str) else facts.query
        entities = [_entity(ref) for ref in refs]
        if query:
            entities.append(_query_entity(facts.path, scrub_query(query, self.key)))
        recorded, recorded_ms = _recorded(facts.when)
        outcome = outcome_of(facts.status)
        event: Event = {
            "resourceType": "AuditEvent", "type": found.type, "subtype": found.subtype,
            "action": found.action, "recorded": recorded, "outcome": outcome,
            "outcomeDesc": _description(facts), "agent": [self._client(facts), self.server],
            "source": self.source}
        if entities:
            event["entity"] = entities
        columns = {"recorded_ms": recorded_ms, "agent": facts.agent,
                   "type": _column(((found.type["system"], found.type["code"]),)),
                   "subtype": _column(found.codes),
                   "action": found.action, "outcome": outcome,
                   "entity": "\n" + "".join(f"{ref}\n" for ref in refs)}
        return event, columns


def audit_event(facts: Facts, *, node: str, key: bytes) -> Event:
    """The AuditEvent of one request (see ``EventBuilder``)."""
    return EventBuilder(node, key).build(facts)[0]


def system_facts(activity: str, *, ok: bool, when: float, description: str,
                 agent: str = "operator") -> Facts:
    """Facts of an action that came by no HTTP request (a SIGHUP reload, an overflow)."""
    return Facts(SIGNAL, activity, "", 200 if ok else 500, agent, when=when,
                 details={"description": description})
