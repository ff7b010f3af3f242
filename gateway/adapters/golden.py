"""Golden tests of a site: its sample messages and exports, run through the mapping with a
fixed key and time, compared structurally with the expected bundles. Used by
``gateway sites test`` and by the test suite."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from gateway.adapters import hooks
from gateway.adapters.labexport.build import export_context
from gateway.adapters.labexport.importer import build_rows, validate_rows
from gateway.adapters.labexport.reader import read_table
from gateway.adapters.labexport.report import ImportReport
from gateway.adapters.loader import Network
from gateway.adapters.site import Site
from gateway.hl7.parser import parse

TEST_KEY = b"gateway-sites-test-key-not-secret"
TEST_RECEIVED = "2026-01-01T00:00:00Z"
SAMPLE_SUFFIXES = (".hl7", ".csv", ".tsv", ".xlsx")


@dataclass(frozen=True, slots=True)
class Difference:
    path: str
    expected: Any
    actual: Any

    def __str__(self) -> str:
        return f"{self.path}: expected {_short(self.expected)}, got {_short(self.actual)}"


def _short(value: Any) -> str:
    text = json.dumps(value, ensure_ascii=False) if value is not _MISSING else "(missing)"
    return text if len(text) <= 80 else text[:77] + "..."


_MISSING = object()


def diff(expected: Any, actual: Any, path: str = "$") -> Iterator[Difference]:
    """Structural differences; Bundle entries are matched by fullUrl, not position."""
    if isinstance(expected, dict) and isinstance(actual, dict):
        for key in sorted(set(expected) | set(actual)):
            yield from diff(expected.get(key, _MISSING), actual.get(key, _MISSING),
                            f"{path}.{key}")
    elif isinstance(expected, list) and isinstance(actual, list):
        if path.endswith(".entry"):
            yield from diff(_by_url(expected), _by_url(actual), path)
            return
        for i in range(max(len(expected), len(actual))):
            yield from diff(expected[i] if i < len(expected) else _MISSING,
                            actual[i] if i < len(actual) else _MISSING, f"{path}[{i}]")
    elif expected != actual or type(expected) is not type(actual):
        yield Difference(path, expected, actual)


def _by_url(entries: list[Any]) -> dict[str, Any]:
    return {str(e.get("fullUrl", i)): e for i, e in enumerate(entries)}


def bundle(resources: list[dict[str, Any]]) -> dict[str, Any]:
    return {"resourceType": "Bundle", "type": "transaction", "entry": [
        {"fullUrl": f"{r['resourceType']}/{r['id']}", "resource": r,
         "request": {"method": "PUT", "url": f"{r['resourceType']}/{r['id']}"}}
        for r in resources]}


def samples_dir(network: Network, site: Site) -> Path:
    base = network.directory or Path(".")
    return base / "samples" / site.id


def samples(network: Network, site: Site) -> list[Path]:
    folder = samples_dir(network, site)
    if not folder.is_dir():
        return []
    return sorted(p for p in folder.iterdir() if p.suffix.lower() in SAMPLE_SUFFIXES)


def expected_path(sample: Path) -> Path:
    return sample.parent / "expected" / (sample.name + ".json")


def run_sample(network: Network, site: Site, sample: Path) -> dict[str, Any]:
    """The bundle (plus the conversion or import report) a sample produces."""
    data = sample.read_bytes()
    if sample.suffix.lower() == ".hl7":
        from gateway.mapping import map_message

        message = parse(hooks.before_mapping(site, data))
        result = map_message(message, site, pseudonym_key=TEST_KEY, received=TEST_RECEIVED,
                             studies=network.studies)
        resources = hooks.after_mapping(site, result.resources)
        return {"bundle": bundle(resources), "report": result.outcome}
    report = ImportReport(sample.name, site.id, "sample")
    table = read_table(data, site)
    report.layout, report.rows = table.layout, len(table.rows)
    rows = validate_rows(table, site, network, report)
    ctx = export_context(site, TEST_KEY, TEST_RECEIVED)
    build_rows(ctx, rows, report, sample.name)
    return {"bundle": bundle(list(ctx.resources.values())), "report": report.to_outcome()}


def check_sample(network: Network, site: Site, sample: Path,
                 update: bool = False) -> list[Difference]:
    actual = run_sample(network, site, sample)
    target = expected_path(sample)
    if update or not target.exists():
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(json.dumps(actual, indent=1, ensure_ascii=False) + "\n",
                          encoding="utf-8")
        return []
    expected = json.loads(target.read_text(encoding="utf-8"))
    return list(diff(expected, actual))
