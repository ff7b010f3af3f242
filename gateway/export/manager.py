"""Bulk Data export jobs: kept in the database, run in background threads, files on disk.

A job row (``export_job``) records who asked (client id, scopes, studies, sites), what
(kind, group, parameters), its ``transactionTime`` and, once done, the manifest. Each job
runs in its own thread (at most ``max_active`` jobs at once: more answer 429), streaming
each type in keyset pages from the database (``gateway.store.exports.stream_pages``) into
``<data dir>/exports/<job>/<Type>.ndjson`` (mode 0600): memory stays flat whatever the
volume. Cancel (DELETE) stops the thread at the next page and removes the files. Finished
jobs and their files expire ``retention_hours`` after they end.

A restart never loses a finished job (its manifest is in its row, its files on disk); a job
that was running when the gateway stopped is marked ``error`` with a message saying so (the
client starts it again): resuming would mix two points in time in one export.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from gateway.export.pseudonyms import StudyPseudonyms
from gateway.export.request import ExportRequest
from gateway.security.principal import Principal
from gateway.store.content import format_instant, now_instant
from gateway.store.exports import (
    ACTIVE,
    ExportJobs,
    Scope,
    restriction_of_record,
    stream_pages,
)
from gateway.store.sql import SqlStore

log = logging.getLogger(__name__)
SWEEP_EVERY = 60.0  # s between two looks for expired jobs
PROGRESS_EVERY = 1.0  # s between two progress notes in the job row while a type is written
# the caller's data restriction, from the principal recorded in the job and a resource type,
# as a function that narrows a ``gateway.store.exports`` query (None: unrestricted)
Restriction = Callable[[dict[str, Any], str], Callable[[Any], Any] | None]


class TooManyExports(Exception):
    pass


class ExportManager:
    def __init__(self, store: SqlStore, data_dir: Path, *, network_key: bytes = b"",
                 retention_hours: float = 24.0, max_active: int = 2,
                 requires_access_token: bool = False, page: int = 2000,
                 restriction: Restriction | None = None,
                 progress_every: float = PROGRESS_EVERY) -> None:
        self.store = store
        self.jobs = ExportJobs(store)
        self.directory = data_dir / "exports"
        self.network_key = network_key
        self.retention = timedelta(hours=retention_hours)
        self.max_active = max_active
        self.requires_access_token = requires_access_token
        self.page = page
        self.restriction = restriction
        self.progress_every = progress_every
        self._lock = threading.Lock()
        self._cancel: dict[str, threading.Event] = {}
        self._threads: dict[str, threading.Thread] = {}
        self._stop = threading.Event()
        self._sweeper: threading.Thread | None = None

    # -- lifecycle -------------------------------------------------------------------------

    def start(self) -> None:
        """Fail the jobs a previous process left running; sweep expired jobs from now on."""
        for id in self.jobs.ids(statuses=ACTIVE):
            self.jobs.update(id, status="error", finished=now_instant(),
                             expires=self._expiry(), error="the gateway restarted while "
                             "this export ran; start the export again")
            self._remove_files(id)
        self._sweeper = threading.Thread(target=self._sweep_loop, name="export-sweeper",
                                         daemon=True)
        self._sweeper.start()

    def stop(self) -> None:
        self._stop.set()
        for event in list(self._cancel.values()):
            event.set()
        for thread in list(self._threads.values()):
            thread.join(timeout=10)

    # -- requests --------------------------------------------------------------------------

    def kick_off(self, request: ExportRequest, principal: Principal, url: str,
                 base: str, patients: list[str] | None, study: str | None) -> str:
        """Record and start a job; raises ``TooManyExports`` when ``max_active`` run."""
        with self._lock:
            if self.jobs.active() >= self.max_active:
                raise TooManyExports
            id = uuid.uuid4().hex
            params = {**request.params(), "base": base, "patients": patients, "study": study}
            self.jobs.add({
                "id": id, "status": "accepted", "kind": request.kind,
                "group_id": request.group_id, "request": url, "params": params,
                "client_id": principal.client_id, "principal": _principal(principal),
                "transaction_time": now_instant(), "created": now_instant()})
            self._cancel[id] = threading.Event()
            thread = threading.Thread(target=self._run, args=(id,), name=f"export-{id[:8]}",
                                      daemon=True)
            self._threads[id] = thread
        thread.start()
        return id

    def job_for(self, id: str, principal: Principal) -> dict[str, Any] | None:
        """The job, if it is the caller's own (anything else: as if it did not exist)."""
        job = self.jobs.get(id)
        if job is None or job["status"] == "cancelled":
            return None
        if not principal.anonymous and job["client_id"] != principal.client_id:
            return None
        return job

    def cancel(self, id: str) -> None:
        self.jobs.update(id, status="cancelled", finished=now_instant())
        event = self._cancel.get(id)
        if event is not None:
            event.set()
        self._remove_files(id)
        self.jobs.remove(id)

    def running(self) -> int:
        """Jobs whose thread is still at work in this process."""
        return len(self._threads)

    def file(self, id: str, name: str) -> Path | None:
        path = self.directory / id / name
        if "/" in name or name.startswith(".") or not path.is_file():
            return None
        return path

    # -- running ---------------------------------------------------------------------------

    def _run(self, id: str) -> None:
        cancel = self._cancel[id]
        try:
            job = self.jobs.get(id)
            assert job is not None
            self.jobs.update(id, status="in-progress", only_if=("accepted",))
            manifest = self._export(job, cancel)
            if cancel.is_set():
                self._remove_files(id)
                return
            self.jobs.update(id, only_if=("in-progress",), status="completed",
                             manifest=manifest, finished=now_instant(), expires=self._expiry(),
                             progress="done")
        except Exception as exc:  # noqa: BLE001 - the job fails, the gateway goes on
            # the type only: a driver error's text may carry the parameters of a query
            log.error("export %s failed: %s", id, type(exc).__name__)
            self._remove_files(id)
            self.jobs.update(id, only_if=ACTIVE, status="error", finished=now_instant(),
                             expires=self._expiry(),
                             error=f"the export failed: {type(exc).__name__}")
        finally:
            self._cancel.pop(id, None)
            self._threads.pop(id, None)

    def _export(self, job: dict[str, Any], cancel: threading.Event) -> dict[str, Any]:
        params = job["params"]
        folder = self.directory / job["id"]
        folder.mkdir(parents=True, exist_ok=True, mode=0o700)
        outputs = []
        types = params["types"]
        for n, rtype in enumerate(types):
            if cancel.is_set():
                break
            stage = f"{rtype} ({n + 1} of {len(types)} types)"
            self.jobs.update(job["id"], progress=stage)
            count = self._write_type(job, rtype, folder / f"{rtype}.ndjson", cancel, stage)
            if count:
                outputs.append({"type": rtype, "count": count,
                                "url": f"{params['base']}/$export-file/{job['id']}/"
                                       f"{rtype}.ndjson"})
        return {"transactionTime": job["transaction_time"], "request": job["request"],
                "requiresAccessToken": self._requires_token(job), "output": outputs,
                "error": []}

    def _write_type(self, job: dict[str, Any], rtype: str, path: Path,
                    cancel: threading.Event, stage: str) -> int:
        params = job["params"]
        rewrite = (StudyPseudonyms(self.network_key, params["study"]).apply
                   if params.get("pseudonymize") == "study" else None)
        count, reported = 0, time.monotonic()
        with _private_file(path) as out:
            for page in self._pages(job, rtype):
                if cancel.is_set():
                    break
                for _, content in page:
                    out.write(rewrite(rtype, content) if rewrite else content)
                    out.write(b"\n")
                count += len(page)
                if time.monotonic() - reported >= self.progress_every:
                    self.jobs.update(job["id"], progress=f"{stage}: {count} written")
                    reported = time.monotonic()
        if not count:
            path.unlink(missing_ok=True)
        return count

    def _pages(self, job: dict[str, Any], rtype: str) -> Iterator[list[tuple[str, bytes]]]:
        from gateway.export.filters import filtered_pages

        params = job["params"]
        associated = params.get("associated_only") and rtype == "Provenance"
        scope = Scope(until=job["transaction_time"], since=params.get("since"),
                      patients=params.get("patients"), compartment=job["kind"] != "system",
                      provenance_of=[t for t in params["types"] if t != "Provenance"]
                      if associated else (),
                      latest_provenance=bool(associated) and "RelevantProvenanceResources"
                      not in params.get("associated", ()),
                      restriction=self.restriction(job["principal"], rtype)
                      if self.restriction is not None else None)
        filters = params.get("type_filters", {}).get(rtype)
        if filters:
            restrict = (restriction_of_record(job["principal"])
                        if self.restriction is not None else None)
            return filtered_pages(self.store, rtype, filters, scope, self.page, restrict)
        return stream_pages(self.store, rtype, scope, page=self.page)

    def _requires_token(self, job: dict[str, Any]) -> bool:
        """True when authentication is configured: the gateway says so, or the job was
        asked for by an authenticated client (the files are served to it alone)."""
        return self.requires_access_token or not job["principal"].get("anonymous", False)

    # -- expiry ----------------------------------------------------------------------------

    def sweep(self) -> int:
        """Remove the jobs (and files) whose retention has passed; how many went."""
        gone = self.jobs.ids(expired_before=now_instant())
        for id in gone:
            self._remove_files(id)
            self.jobs.remove(id)
        return len(gone)

    def _sweep_loop(self) -> None:
        while not self._stop.wait(SWEEP_EVERY):
            try:
                self.sweep()
            except Exception:  # noqa: BLE001 - the next round tries again
                log.warning("export sweep failed", exc_info=True)

    def _expiry(self) -> str:
        return format_instant(datetime.now(UTC) + self.retention)

    def _remove_files(self, id: str) -> None:
        shutil.rmtree(self.directory / id, ignore_errors=True)


@contextlib.contextmanager
def _private_file(path: Path) -> Iterator[Any]:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb", buffering=1 << 20) as out:
        yield out


def _principal(principal: Principal) -> dict[str, Any]:
    return {"client_id": principal.client_id, "scopes": sorted(principal.scopes),
            "studies": sorted(principal.studies) if principal.studies is not None else None,
            "sites": sorted(principal.sites) if principal.sites is not None else None,
            "anonymous": principal.anonymous}
