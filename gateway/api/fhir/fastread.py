"""Reads by id for the FHIR API: the stored JSON bytes, served as they are.

The store reads them (``Store.raw_reader``: no JSON parse, and on PostgreSQL the reads of
an event loop batched on one nonblocking connection, ``gateway.store.rawread``); here an
unknown resource becomes 404 and a deleted one 410, as ``FhirError``.
"""

from __future__ import annotations

from gateway.errors import Gone
from gateway.store import RawResource, Store

from .outcomes import FhirError

__all__ = ["RawReader", "RawResource"]


class RawReader:
    """The API's reads by id on ``store``; ``close`` closes the store reader's connections
    (so does closing the store)."""

    def __init__(self, store: Store) -> None:
        self.raw = store.raw_reader()

    async def read_async(self, resource_type: str, id: str) -> RawResource:
        try:
            return _found(resource_type, id, await self.raw.read_async(resource_type, id))
        except Gone as exc:
            raise FhirError.of("deleted", f"{resource_type}/{id} was deleted") from exc

    def read(self, resource_type: str, id: str) -> RawResource:
        try:
            return _found(resource_type, id, self.raw.read(resource_type, id))
        except Gone as exc:
            raise FhirError.of("deleted", f"{resource_type}/{id} was deleted") from exc

    def close(self) -> None:
        self.raw.close()


def _found(resource_type: str, id: str, raw: RawResource | None) -> RawResource:
    if raw is None:
        raise FhirError.of("not-found", f"{resource_type}/{id} is not known")
    return raw
