"""Golden tests: every example site's samples produce exactly their expected bundles."""

from __future__ import annotations

import pytest

from gateway.adapters import golden
from gateway.adapters.loader import Network, load_network
from gateway.fhir import validate

NETWORK = load_network()
SAMPLES = [(site_id, path) for site_id, site in sorted(NETWORK.sites.items())
           for path in golden.samples(NETWORK, site)]


def test_every_example_site_has_samples() -> None:
    assert {site_id for site_id, _ in SAMPLES} == set(NETWORK.sites)


@pytest.mark.parametrize(("site_id", "sample"), SAMPLES,
                         ids=[f"{s}/{p.name}" for s, p in SAMPLES])
def test_a_sample_produces_its_expected_bundle(network: Network, site_id: str,
                                               sample: object) -> None:
    site = NETWORK.sites[site_id]
    differences = golden.check_sample(NETWORK, site, sample)  # type: ignore[arg-type]
    assert not differences, "\n".join(str(d) for d in differences[:20])
    for entry in golden.run_sample(NETWORK, site, sample)["bundle"]["entry"]:  # type: ignore[arg-type]
        validate(entry["resource"])


def test_diff_matches_bundle_entries_by_full_url_not_position() -> None:
    a = {"entry": [{"fullUrl": "A/1", "resource": {"x": 1}}, {"fullUrl": "B/2", "resource": {}}]}
    b = {"entry": [{"fullUrl": "B/2", "resource": {}}, {"fullUrl": "A/1", "resource": {"x": 2}}]}
    assert [d.path for d in golden.diff(a, b)] == ["$.entry.A/1.resource.x"]
