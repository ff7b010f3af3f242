"""MLLP: the Minimal Lower Layer Protocol (HL7 v2.5.1 appendix C, "MLLP release 2").

A block is ``<VT> message <FS><CR>`` (0x0B … 0x1C 0x0D). This module only frames:

- ``FrameReader`` is a pure, incremental state machine: ``feed(bytes) -> list[Frame]``.
- ``MllpServer`` runs it over asyncio streams (plain TCP or TLS), one task per connection,
  frames of one connection strictly in order, and hands each frame to a ``Handler``.
- ``MllpClient`` / ``send_messages`` for ``gateway send`` and tests.

Framing decisions (documented in docs/interface-engineers.md):

- The end of a block is the two bytes ``<FS><CR>``, as the standard defines it. A lone
  ``<FS>`` not followed by ``<CR>`` is content, and a block still open when the peer closes
  the connection is truncated: it is neither processed nor answered (the sender did not
  finish it, so it will resend it).
- Bytes outside a block (stray CR/LF after ``<FS><CR>``, noise) are skipped and counted.
- ``<VT><FS><CR>`` is an empty message (the handler answers it, e.g. with AR).
- A block longer than ``max_message_size`` becomes ``Oversize(head)``: the first
  ``HEAD_SIZE`` bytes are kept so that an AR can carry the sender's MSH, the rest is
  discarded up to the end of the block, and the connection stays usable. The buffer of a
  connection therefore never holds more than ``max_message_size`` + one read.

Limits of the server (hostile peers): at most ``max_connections`` open connections (one
more is closed at once, logged and counted); a block must end within ``frame_timeout``
seconds of its start (a sender trickling a frame byte by byte is closed: slowloris); an
idle connection closes after ``idle_timeout``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import ssl
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Protocol

__all__ = [
    "CR",
    "FS",
    "VT",
    "Frame",
    "FrameReader",
    "Handler",
    "MllpClient",
    "MllpServer",
    "Oversize",
    "Peer",
    "ServerStats",
    "client_ssl_context",
    "send_messages",
    "server_ssl_context",
    "wrap",
]

log = logging.getLogger(__name__)

VT = b"\x0b"
FS = b"\x1c"
CR = b"\x0d"
END = FS + CR
HEAD_SIZE = 4096
DEFAULT_MAX_MESSAGE_SIZE = 10 * 2**20
DEFAULT_MAX_CONNECTIONS = 100
DEFAULT_FRAME_TIMEOUT = 120.0
READ_SIZE = 64 * 1024


def wrap(message: bytes) -> bytes:
    """Frame one message as an MLLP block."""
    return VT + message + END


@dataclass(frozen=True, slots=True)
class Oversize:
    """A block longer than the limit: its first bytes, enough to find the MSH."""

    head: bytes
    size: int


Frame = bytes | Oversize


class FrameReader:
    """Incremental MLLP deframer. Pure: no I/O, feed it whatever the socket returned."""

    def __init__(self, max_message_size: int = DEFAULT_MAX_MESSAGE_SIZE) -> None:
        self.max_message_size = max_message_size
        self.junk_bytes = 0
        self._buf = bytearray()
        self._in_block = False
        self._discarding = False
        self._head = b""
        self._discarded = 0

    @property
    def in_frame(self) -> bool:
        """True while a block has started and not ended (a close now truncates it)."""
        return self._in_block

    @property
    def buffered(self) -> int:
        """Bytes held for the open block (at most ``max_message_size`` + one chunk fed)."""
        return len(self._buf)

    def feed(self, data: bytes) -> list[Frame]:
        frames: list[Frame] = []
        pos = 0
        while pos < len(data):
            if self._in_block:
                pos = self._read_block(data, pos, frames)
            else:
                pos = self._skip_junk(data, pos)
        return frames

    def _skip_junk(self, data: bytes, pos: int) -> int:
        start = data.find(VT, pos)
        if start < 0:
            self.junk_bytes += len(data) - pos
            return len(data)
        self.junk_bytes += start - pos
        self._in_block = True
        return start + 1

    def _read_block(self, data: bytes, pos: int, frames: list[Frame]) -> int:
        # The previous chunk may have ended with <FS>: search from one byte back.
        carry = 1 if self._buf[-1:] == FS else 0
        window = self._buf[-carry:] + data[pos:] if carry else data[pos:]
        end = window.find(END)
        if end < 0:
            self._append(data[pos:])
            return len(data)
        if end < carry:  # the <FS> of <FS><CR> arrived at the end of the previous chunk
            del self._buf[-1:]
            self._discarded -= 1 if self._discarding else 0
        else:
            self._append(data[pos:pos + end - carry])
        frames.append(self._finish())
        return pos + end - carry + len(END)

    def _append(self, chunk: bytes) -> None:
        if self._discarding:
            self._discarded += len(chunk)
            if chunk:
                self._buf[:] = chunk[-1:]  # keep a trailing <FS> for the next search
            return
        self._buf += chunk
        if len(self._buf) > self.max_message_size:
            self._discarding = True
            self._head = bytes(self._buf[:HEAD_SIZE])
            self._discarded = len(self._buf)
            self._buf[:] = self._buf[-1:]

    def _finish(self) -> Frame:
        frame: Frame
        if self._discarding:
            frame = Oversize(self._head[:self._discarded], self._discarded)
        else:
            frame = bytes(self._buf)
        self._buf.clear()
        self._in_block = self._discarding = False
        self._head, self._discarded = b"", 0
        return frame


# --- server ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Peer:
    """Who is on the other end: address, and the client certificate subject under mTLS."""

    host: str
    port: int
    tls: bool = False
    cert_subject: str | None = None
    cert_names: tuple[str, ...] = ()  # subject CN and subjectAltName values (mutual TLS)

    def __str__(self) -> str:
        return f"{self.host}:{self.port}"


class Handler(Protocol):
    """What the server calls; returns the ER7 answers to send (each framed by the server)."""

    async def handle(self, frame: bytes, peer: Peer) -> list[bytes]: ...

    def oversize(self, head: bytes, peer: Peer) -> list[bytes]: ...


@dataclass(slots=True)
class ServerStats:
    connections: int = 0
    active: int = 0
    frames: int = 0
    junk_bytes: int = 0
    oversize: int = 0
    errors: int = 0
    idle_timeouts: int = 0
    truncated: int = 0
    refused: int = 0  # connections closed at once: max_connections were open
    frame_timeouts: int = 0  # connections closed: a block unfinished after frame_timeout


@dataclass(eq=False, slots=True)
class _Connection:
    peer: Peer
    task: asyncio.Task[None] | None = None
    busy: bool = False


@dataclass(slots=True)
class _State:
    closing: bool = False
    conns: set[_Connection] = field(default_factory=set)
    refused_logged: float = float("-inf")  # loop time of the last "refused" log line


class MllpServer:
    """An asyncio MLLP listener. ``await start()``, ``.port``, ``await close(grace)``."""

    def __init__(self, handler: Handler, host: str = "127.0.0.1", port: int = 2575, *,
                 ssl_context: ssl.SSLContext | None = None,
                 max_message_size: int = DEFAULT_MAX_MESSAGE_SIZE,
                 idle_timeout: float = 300.0,
                 max_connections: int = DEFAULT_MAX_CONNECTIONS,
                 frame_timeout: float = DEFAULT_FRAME_TIMEOUT) -> None:
        self.handler = handler
        self.host = host
        self._port = port
        self.ssl_context = ssl_context
        self.max_message_size = max_message_size
        self.idle_timeout = idle_timeout
        self.max_connections = max_connections
        self.frame_timeout = frame_timeout
        self.stats = ServerStats()
        self._server: asyncio.Server | None = None
        self._state = _State()

    @property
    def port(self) -> int:
        """The bound port (the real one when constructed with port 0)."""
        if self._server is None or not self._server.sockets:
            return self._port
        return int(self._server.sockets[0].getsockname()[1])

    async def start(self) -> None:
        self._server = await asyncio.start_server(
            self._on_connect, self.host, self._port, ssl=self.ssl_context,
            ssl_handshake_timeout=30.0 if self.ssl_context else None, limit=READ_SIZE)

    async def __aenter__(self) -> MllpServer:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def close(self, grace: float = 10.0) -> None:
        """Stop accepting; let in-flight messages finish and be answered; close connections."""
        self._state.closing = True
        if self._server is not None:
            self._server.close()
        for conn in list(self._state.conns):
            if not conn.busy and conn.task is not None:
                conn.task.cancel()  # idle, waiting for bytes: nothing in flight
        tasks = [c.task for c in self._state.conns if c.task is not None]
        if tasks:
            _, pending = await asyncio.wait(tasks, timeout=grace)
            for task in pending:
                task.cancel()
            await asyncio.gather(*pending, return_exceptions=True)
        if self._server is not None:
            await self._server.wait_closed()

    async def _on_connect(self, reader: asyncio.StreamReader,
                          writer: asyncio.StreamWriter) -> None:
        conn = _Connection(_peer_of(writer), asyncio.current_task())
        if self._state.closing:
            await _close_writer(writer)
            return
        if len(self._state.conns) >= self.max_connections:
            self._refuse(conn.peer)
            await _close_writer(writer)
            return
        self._state.conns.add(conn)
        self.stats.connections += 1
        self.stats.active += 1
        try:
            await self._serve(conn, reader, writer)
        except asyncio.CancelledError:
            pass
        except (ConnectionError, ssl.SSLError, OSError) as exc:
            log.info("mllp connection from %s ended: %s", conn.peer, type(exc).__name__)
        finally:
            self.stats.active -= 1
            self._state.conns.discard(conn)
            await _close_writer(writer)

    def _refuse(self, peer: Peer) -> None:
        """Count a refused connection; log it, at most once a second (a flood of refused
        connections must not become a flood of log lines)."""
        self.stats.refused += 1
        now = asyncio.get_running_loop().time()
        if now - self._state.refused_logged >= 1.0:
            self._state.refused_logged = now
            log.warning("mllp connection from %s refused: %d connections open "
                        "(--mllp-max-connections); %d refused since start", peer,
                        len(self._state.conns), self.stats.refused)

    async def _serve(self, conn: _Connection, reader: asyncio.StreamReader,
                     writer: asyncio.StreamWriter) -> None:
        frames = FrameReader(self.max_message_size)
        loop = asyncio.get_running_loop()
        deadline: float | None = None  # when the open block must have ended
        while not self._state.closing:
            conn.busy = False
            data = await self._read(reader, conn.peer, deadline)
            conn.busy = True
            if not data:
                break
            junk = frames.junk_bytes
            received = frames.feed(data)
            self.stats.junk_bytes += frames.junk_bytes - junk
            if not frames.in_frame:
                deadline = None
            elif deadline is None or received:  # a block began (after the last one ended)
                deadline = loop.time() + self.frame_timeout
            if not await self._answer_all(received, conn.peer, writer):
                return
        if frames.in_frame:
            self.stats.truncated += 1
            log.info("mllp connection from %s closed inside a block: not processed", conn.peer)

    async def _read(self, reader: asyncio.StreamReader, peer: Peer,
                    deadline: float | None) -> bytes:
        """The next bytes; b"" at the end, after ``idle_timeout`` without bytes, or at the
        ``deadline`` of an unfinished block."""
        loop = asyncio.get_running_loop()
        at = loop.time() + self.idle_timeout
        if deadline is not None:
            at = min(at, deadline)
        try:
            async with asyncio.timeout_at(at):
                return await reader.read(READ_SIZE)
        except TimeoutError:
            if deadline is not None and loop.time() >= deadline:
                self.stats.frame_timeouts += 1
                log.warning("mllp frame from %s unfinished after %g s (--mllp-frame-timeout):"
                            " connection closed", peer, self.frame_timeout)
            else:
                self.stats.idle_timeouts += 1
            return b""

    async def _answer_all(self, frames: Iterable[Frame], peer: Peer,
                          writer: asyncio.StreamWriter) -> bool:
        """Answer each frame in order; False when the connection must be closed."""
        for frame in frames:
            answers = await self._dispatch(frame, peer)
            if answers is None:
                return False
            for answer in answers:
                writer.write(wrap(answer))
            await writer.drain()
            if self._state.closing:
                return False  # closing: finish this message only
        return True

    async def _dispatch(self, frame: Frame, peer: Peer) -> Sequence[bytes] | None:
        self.stats.frames += 1
        try:
            if isinstance(frame, Oversize):
                self.stats.oversize += 1
                log.warning("mllp frame from %s exceeds %d bytes (%d): answered from its head",
                            peer, self.max_message_size, frame.size)
                return self.handler.oversize(frame.head, peer)
            return await self.handler.handle(frame, peer)
        except Exception as exc:  # noqa: BLE001 - the edge must survive any handler bug
            self.stats.errors += 1
            # Type only: an exception's text may carry message content (PHI).
            log.error("mllp handler failed on a frame from %s (%s): connection closed",
                      peer, type(exc).__name__)
            return None


def _peer_of(writer: asyncio.StreamWriter) -> Peer:
    addr = writer.get_extra_info("peername") or ("?", 0)
    ssl_obj = writer.get_extra_info("ssl_object")
    subject, names = None, ()
    if ssl_obj is not None:
        cert = ssl_obj.getpeercert()
        if cert:
            subject = ",".join(f"{k}={v}" for rdn in cert.get("subject", ()) for k, v in rdn)
            names = tuple(v for rdn in cert.get("subject", ()) for k, v in rdn
                          if k == "commonName") + tuple(v for _, v in
                                                        cert.get("subjectAltName", ()))
    return Peer(str(addr[0]), int(addr[1]), ssl_obj is not None, subject, names)


async def _close_writer(writer: asyncio.StreamWriter) -> None:
    writer.close()
    with contextlib.suppress(ConnectionError, ssl.SSLError, OSError, TimeoutError):
        async with asyncio.timeout(5):
            await writer.wait_closed()


# --- TLS ---------------------------------------------------------------------------------


def server_ssl_context(certfile: str, keyfile: str | None = None,
                       client_ca: str | None = None) -> ssl.SSLContext:
    """TLS ≥ 1.2 server context; with ``client_ca``, clients must present a certificate
    signed by that CA (mutual TLS)."""
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.load_cert_chain(certfile, keyfile)
    if client_ca:
        ctx.verify_mode = ssl.CERT_REQUIRED
        ctx.load_verify_locations(client_ca)
    return ctx


def client_ssl_context(ca: str | None = None, cert: str | None = None,
                       key: str | None = None) -> ssl.SSLContext:
    """TLS client context trusting ``ca`` (else the system store), with an optional
    client certificate for mutual TLS."""
    ctx = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=ca)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    if cert:
        ctx.load_cert_chain(cert, key)
    return ctx


# --- client ------------------------------------------------------------------------------


class MllpClient:
    """One MLLP connection: send a message, wait for its answer(s), then the next."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, *,
                 timeout: float = 30.0, linger: float = 0.3) -> None:
        self._reader = reader
        self._writer = writer
        self._frames = FrameReader()
        self._pending: list[Frame] = []
        self.timeout = timeout
        self.linger = linger

    @classmethod
    async def connect(cls, host: str, port: int, *, ssl_context: ssl.SSLContext | None = None,
                      timeout: float = 30.0,  # noqa: ASYNC109 - also the per-answer timeout
                      server_hostname: str | None = None) -> MllpClient:
        async with asyncio.timeout(timeout):
            reader, writer = await asyncio.open_connection(
                host, port, ssl=ssl_context,
                server_hostname=(server_hostname or host) if ssl_context else None)
        return cls(reader, writer, timeout=timeout)

    async def __aenter__(self) -> MllpClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def close(self) -> None:
        await _close_writer(self._writer)

    async def send(self, message: bytes | str) -> list[bytes]:
        """Send one message; return its answers (ACK texts, unframed, in arrival order).

        Original mode: one answer. Enhanced mode (MSH-15/16 valued): a commit ACK and then,
        when MSH-16 asks for it, the application ACK; answers that may or may not come
        (ER/SU/NE) are waited for ``linger`` seconds.
        """
        data = message.encode("utf-8") if isinstance(message, str) else message
        self._writer.write(wrap(data))
        await self._writer.drain()
        accept, app = _ack_types(data)
        answers: list[bytes] = []
        while True:
            expected = _expects_more(answers, accept, app)
            if expected is False:
                return answers
            frame = await self._next_frame(self.timeout if expected else self.linger)
            if frame is None:
                if expected:
                    raise TimeoutError("no acknowledgment within the timeout")
                return answers
            answers.append(frame)

    async def _next_frame(self, wait: float) -> bytes | None:
        try:
            async with asyncio.timeout(wait):
                while not self._pending:
                    data = await self._reader.read(READ_SIZE)
                    if not data:
                        raise ConnectionResetError("the server closed the connection")
                    self._pending.extend(self._frames.feed(data))
        except TimeoutError:
            return None
        frame = self._pending.pop(0)
        return frame.head if isinstance(frame, Oversize) else frame


def _ack_types(message: bytes) -> tuple[str, str]:
    """(MSH-15, MSH-16) read from the raw header, upper case; "" when absent."""
    line = message.lstrip(b"\xef\xbb\xbf").split(b"\r", 1)[0].split(b"\n", 1)[0]
    if not line.startswith(b"MSH") or len(line) < 4:
        return "", ""
    parts = line.split(line[3:4])
    pick = [parts[i].decode("ascii", "replace").strip().upper() if i < len(parts) else ""
            for i in (14, 15)]
    return pick[0], pick[1]


def _expects_more(answers: list[bytes], accept: str, app: str) -> bool | None:
    """True: an answer must come; None: one may come; False: done."""
    if not accept and not app:
        return not answers  # original mode: exactly one
    codes = [_msa1(a) for a in answers]
    if any(c.startswith("A") or c in ("CE", "CR") for c in codes):
        return False  # an application ACK, or a refused commit: nothing follows
    if codes:  # CA received
        return True if app == "AL" else (None if app in ("ER", "SU") else False)
    return True if "AL" in (accept, app) else None


def _msa1(ack: bytes) -> str:
    for line in ack.replace(b"\n", b"\r").split(b"\r"):
        if line.startswith(b"MSA") and len(line) > 4:
            return line.split(line[3:4])[1].decode("ascii", "replace").strip()
    return ""


async def send_messages(host: str, port: int, messages: Iterable[bytes | str], *,
                        ssl_context: ssl.SSLContext | None = None,
                        timeout: float = 30.0,  # noqa: ASYNC109 - per answer, not overall
                        ) -> list[bytes]:
    """Send each message on one connection, waiting for its answers; all answers in order."""
    out: list[bytes] = []
    async with await MllpClient.connect(host, port, ssl_context=ssl_context,
                                        timeout=timeout) as client:
        for message in messages:
            out.extend(await client.send(message))
    return out
