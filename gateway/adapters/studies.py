"""Every study of the studies file exists as a ResearchStudy from the start, not only once
data names it: written by the edge when it starts (new versions only when the file
changed), relayed to the hub like any other resource."""

from __future__ import annotations

import logging
from collections.abc import Iterable

from gateway.adapters.site import Study
from gateway.mapping.research import known_study
from gateway.store.base import Store

log = logging.getLogger(__name__)
SOURCE = "urn:plagencell:network:studies"


def publish_studies(store: Store, studies: Iterable[Study], node_id: str) -> int:
    """Put the ResearchStudy of each study whose stored content differs (or that is not
    stored yet); the number written. A study that data from a site already wrote with the
    same content is left as it is (its ``meta.source`` names that site)."""
    changed = 0
    headers = {"origin": node_id, "site": "network", "message-id": "studies-file"}
    with store.transaction() as tx:
        for study in studies:
            resource = known_study(study)
            stored = tx.get("ResearchStudy", resource["id"])
            if stored is not None and {k: v for k, v in stored.items() if k != "meta"} \
                    == resource:
                continue
            changed += int(tx.put(resource, source=SOURCE, headers=headers).changed)
    log.info("studies file: %d ResearchStudy written or changed", changed)
    return changed
