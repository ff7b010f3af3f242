"""The ingest edge's core: raw message → inbox → parse → site → map → store → ACK.

``IngestService`` (service.py) runs the writer thread; ``Group`` (group.py) is one group
commit; ``Outcome`` and the stored ACK frames are in outcome.py.
"""

from gateway.ingest.outcome import Job, Outcome, utc_now
from gateway.ingest.service import IngestService

__all__ = ["IngestService", "Job", "Outcome", "utc_now"]
