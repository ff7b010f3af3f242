"""Index rows of a resource (placeholder until the registry lands)."""

from __future__ import annotations

from typing import Any


def index_rows(resource: dict[str, Any]) -> dict[str, list[dict[str, Any]]]:
    return {}
