"""The gateway's one error hierarchy.

    GatewayError                      base; carries ``retriable`` and context (no PHI)
    ├── ConfigError                   bad settings or site files: refuse to start
    ├── InboundError                  an inbound message cannot be accepted as is;
    │   │                             says what to answer: ``ack_code`` (AE/AR),
    │   │                             ``err_code`` (HL7 table 0357) and the ERR-2 location
    │   ├── ParseError                not parseable ER7 (AR, 100/101/102)
    │   ├── UnsupportedMessage        message type / event / version not accepted (AR, 200/201/203)
    │   ├── UnknownSite               MSH-4 names no configured site (AR, 103 at MSH-4)
    │   ├── MappingError              a field cannot be mapped (AE, 101/102/103 at its position)
    │   ├── Overloaded                temporarily unable to accept (AE, 207, retriable)
    │   └── BudgetExceeded            mapping ran past the per-message time budget or the
    │                                 resource limit (AE, 207)
    ├── StoreError                    database failures (translated at the store boundary)
    │   ├── NotFound                  no such resource / version (HTTP 404)
    │   ├── Gone                      the resource is deleted (HTTP 410)
    │   ├── ConflictError             optimistic-lock or uniqueness conflict (HTTP 409)
    │       ├── VersionConflict       If-Match version differs: ``expected``, ``actual`` (412)
    │       └── TransientConflict     deadlock / serialization / concurrent insert (retriable)
    │   └── Cancelled                 a query stopped in the database: its time budget ran
    │                                 out, the client went away or the gateway is stopping
    ├── SearchError                   a malformed or unknown search parameter (HTTP 400);
    │                                 ``issues``: OperationOutcome.issue dicts
    └── BusError                      Kafka / embedded bus failures (retriable)

Library errors are translated once, at the boundary, with ``raise … from exc``. Callers
decide from attributes (``ack_code``, ``retriable``), not from ``isinstance`` chains.
Messages never contain patient data: positions and ids only.
"""

from __future__ import annotations

from dataclasses import dataclass


class GatewayError(Exception):
    retriable: bool = False

    def __init__(self, message: str, **context: object) -> None:
        super().__init__(message)
        self.message = message
        self.context = {k: v for k, v in context.items() if v is not None}

    def __str__(self) -> str:
        if not self.context:
            return self.message
        ctx = ", ".join(f"{k}={v}" for k, v in self.context.items())
        return f"{self.message} ({ctx})"


class ConfigError(GatewayError):
    """Settings or a site file are wrong; names file, line and field."""


@dataclass(frozen=True, slots=True)
class Location:
    """ERR-2 error location: segment id, sequence, field, component (1-based)."""

    segment: str
    sequence: int | None = 1
    field: int | None = None
    component: int | None = None
    repetition: int | None = None

    def __str__(self) -> str:
        out = self.segment
        if self.field is not None:
            out += f"-{self.field}"
            if self.component is not None:
                out += f".{self.component}"
        return out


class InboundError(GatewayError):
    """An inbound message that cannot be processed as is."""

    ack_code = "AE"
    err_code = "207"
    severity = "E"

    def __init__(self, message: str, *, segment: str | None = None, field: int | None = None,
                 component: int | None = None, sequence: int | None = 1,
                 code: str | None = None, ack_code: str | None = None, **context: object) -> None:
        super().__init__(message, **context)
        if code is not None:
            self.err_code = code
        if ack_code is not None:
            self.ack_code = ack_code
        self.location = (Location(segment, sequence, field, component)
                         if segment is not None else None)


class ParseError(InboundError):
    ack_code = "AR"
    err_code = "100"


class UnsupportedMessage(InboundError):
    ack_code = "AR"
    err_code = "200"


class UnknownSite(InboundError):
    ack_code = "AR"
    err_code = "103"


class MappingError(InboundError):
    ack_code = "AE"
    err_code = "102"


class Overloaded(InboundError):
    ack_code = "AE"
    err_code = "207"
    retriable = True


class BudgetExceeded(InboundError):
    """The message's mapping ran past the per-message time budget, or produced more
    resources than one message may write, and was abandoned (stored as an error,
    replayable): the writer thread goes on with the next message."""

    ack_code = "AE"
    err_code = "207"

    def __init__(self, message: str, *, budget: str, segment: str | None = None,
                 field: int | None = None) -> None:
        super().__init__(message, segment=segment, field=field)
        self.budget = budget  # which one ran out: "time" or "resources"


class StoreError(GatewayError):
    retriable = True


class NotFound(StoreError):
    retriable = False


class Gone(StoreError):
    retriable = False


class ConflictError(StoreError):
    retriable = False


class VersionConflict(ConflictError):
    """``If-Match`` named another version than the current one."""

    def __init__(self, message: str, *, expected: int | None, actual: int | None,
                 **context: object) -> None:
        super().__init__(message, **context)
        self.expected = expected
        self.actual = actual


class TransientConflict(ConflictError):
    """Lost a race (deadlock, serialization failure, concurrent create): try again."""

    retriable = True


class Cancelled(StoreError):
    """A query that the database stopped; ``reason`` is ``budget``, ``disconnect`` or
    ``shutdown`` and ``seconds`` the budget it had."""

    retriable = False

    def __init__(self, message: str, *, reason: str, seconds: float,
                 **context: object) -> None:
        super().__init__(message, **context)
        self.reason = reason
        self.seconds = seconds


class SearchError(GatewayError):
    """Search parameters the server cannot apply; ``issues`` are OperationOutcome issues."""

    def __init__(self, message: str, *, issues: list[dict[str, object]] | None = None,
                 **context: object) -> None:
        super().__init__(message, **context)
        self.issues = issues or [{"severity": "error", "code": "invalid",
                                  "diagnostics": message}]


class BusError(GatewayError):
    retriable = True
