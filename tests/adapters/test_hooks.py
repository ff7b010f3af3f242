"""A site that needs Python: an installed ``gateway.adapters`` entry point (a real
distribution on sys.path, found by importlib.metadata)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from gateway.adapters import hooks
from gateway.adapters.loader import load_network
from gateway.errors import ConfigError

MINIMAL = "id: acme\nname: Acme\nkind: cell-factory\nfacilities: [ACME]\n"
HOOK = '''
class AcmeAdapter:
    def lab_row(self, values, site):
        values["test_code"] = values.get("test_code", "").upper()
        return values

    def after_mapping(self, resources, site):
        return [r for r in resources if r["resourceType"] != "Provenance"]
'''


@pytest.fixture
def installed(tmp_path: Path) -> Path:
    (tmp_path / "acme_hooks.py").write_text(HOOK)
    dist = tmp_path / "acme_hooks-1.0.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: acme-hooks\nVersion: 1.0\n")
    (dist / "entry_points.txt").write_text("[gateway.adapters]\nacme = acme_hooks:AcmeAdapter\n")
    sys.path.insert(0, str(tmp_path))
    hooks.load_adapter.cache_clear()
    yield tmp_path
    sys.path.remove(str(tmp_path))
    sys.modules.pop("acme_hooks", None)
    hooks.load_adapter.cache_clear()


def test_an_installed_adapter_is_loaded_and_its_hooks_apply(installed: Path,
                                                            tmp_path: Path) -> None:
    sites = tmp_path / "sites"
    sites.mkdir()
    (sites / "acme.yaml").write_text(MINIMAL + "adapter: acme\n")
    site = load_network(sites).sites["acme"]
    assert hooks.lab_row(site, {"test_code": "vit"}) == {"test_code": "VIT"}
    kept = hooks.after_mapping(site, [{"resourceType": "Provenance"}, {"resourceType": "Patient"}])
    assert kept == [{"resourceType": "Patient"}]
    assert hooks.before_mapping(site, b"MSH|") == b"MSH|"


def test_a_site_naming_a_missing_adapter_is_refused_at_load(tmp_path: Path) -> None:
    (tmp_path / "acme.yaml").write_text(MINIMAL + "adapter: not-installed\n")
    with pytest.raises(ConfigError, match=r"acme.yaml:5: adapter: adapter 'not-installed' is "
                       r"not installed"):
        load_network(tmp_path)
