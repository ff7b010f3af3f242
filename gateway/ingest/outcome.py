"""What one inbound message becomes: its outcome and ACK frames, and the stored form of
those frames (every ACK sent for a message, kept in one inbox column)."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime

from gateway.adapters.site import Site
from gateway.errors import InboundError
from gateway.hl7.parser import Message
from gateway.mapping import MappingResult
from gateway.store.base import InboxRecord

FRAME_SEPARATOR = b"\x1c"
COMMIT_FOR = {"AA": "CA", "AE": "CA", "AR": "CR"}

Clock = Callable[[], datetime]


def utc_now() -> datetime:
    return datetime.now(UTC)


def instant(moment: datetime) -> str:
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


@dataclass(slots=True)
class Outcome:
    """What happened to one inbound message, and the ACK frames to send back."""

    status: str  # processed | error | rejected | duplicate | refused
    ack_code: str  # AA / AE / AR (the application outcome)
    responses: list[bytes] = field(default_factory=list)
    inbox_id: int | None = None
    changed: int = 0  # resources that got a new version
    retired: int = 0  # replay: results deleted because the mapping no longer writes them
    reason: str | None = None  # error or rejection: the error's type name (metrics label)
    commit_ns: tuple[int, int] | None = None  # the group transaction's start and end (traces)


@dataclass(slots=True)
class Mapped:
    """A message mapped and waiting for the group write."""

    job: Job
    msg: Message
    site: Site
    result: MappingResult
    received: str


@dataclass(slots=True)
class Job:
    raw: bytes
    transport: str
    done: Callable[[Outcome], None]
    replay_of: InboxRecord | None = None
    # a resend (same MSH-3/4/10) of a message that was not accepted: processed again, its
    # inbox record updated in place (only accepted messages are answered from the inbox)
    resend_of: InboxRecord | None = None

    @property
    def prior(self) -> InboxRecord | None:
        """The inbox record this job updates instead of adding one."""
        return self.replay_of or self.resend_of
    # strict validation's errors, found before the writer took the job (None: not yet)
    checked: Sequence[InboundError] | None = None
    arrived: float = field(default_factory=time.monotonic)  # for the inbox's ack_ms

    def ack_ms(self) -> int:
        """Milliseconds from receipt to now (the ACK is built); a replay keeps the first
        ACK's figure."""
        if self.replay_of is not None:
            return self.replay_of.ack_ms or 0
        return int((time.monotonic() - self.arrived) * 1000)



def join_frames(frames: list[bytes]) -> bytes:
    """Every ACK sent for a message, kept in one inbox column (FS cannot occur in ER7)."""
    return FRAME_SEPARATOR.join(frames)


def split_frames(stored: bytes) -> list[bytes]:
    return [f for f in stored.split(FRAME_SEPARATOR) if f]


def msa_code(frames: list[bytes]) -> str:
    """The application outcome (AA/AE/AR) of stored ACKs; CA alone counts as AA."""
    codes = [line[4:6].decode("ascii", "replace") for frame in frames
             for line in frame.replace(b"\n", b"\r").split(b"\r") if line.startswith(b"MSA")]
    app = [c for c in codes if c.startswith("A")]
    worst = {"CA": "AA", "CE": "AE", "CR": "AR"}
    return app[-1] if app else worst.get(codes[-1], "AA") if codes else "AA"
