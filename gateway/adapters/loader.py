"""Load the site files and the network studies file from a directory.

A directory holds one ``<site-id>.yaml`` per site and one ``studies.yaml``. Any error
names the file, the line and the field, and the gateway refuses to start.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import yaml
from pydantic import ValidationError

from gateway.adapters.site import Site, Study
from gateway.errors import ConfigError

STUDIES_FILE = "studies.yaml"
EXAMPLE_SITES = Path(__file__).resolve().parent.parent / "sites"


@dataclass(slots=True)
class Network:
    sites: dict[str, Site] = field(default_factory=dict)
    by_facility: dict[str, Site] = field(default_factory=dict)
    studies: list[Study] = field(default_factory=list)

    def site_for(self, facility: str) -> Site | None:
        return self.by_facility.get(facility.upper())


def _read_yaml(path: Path) -> object:
    try:
        return yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.MarkedYAMLError as exc:
        line = exc.problem_mark.line + 1 if exc.problem_mark else None
        raise ConfigError(f"{path}: line {line}: {exc.problem}", file=str(path)) from exc


def _validation_error(path: Path, exc: ValidationError) -> ConfigError:
    first = exc.errors()[0]
    where = ".".join(str(p) for p in first["loc"])
    return ConfigError(f"{path}: field {where}: {first['msg']}", file=str(path), field=where)


def load_network(directory: Path | str = EXAMPLE_SITES) -> Network:
    directory = Path(directory)
    if not directory.is_dir():
        raise ConfigError(f"sites directory {directory} does not exist")
    network = Network()
    for path in sorted(directory.glob("*.yaml")):
        data = _read_yaml(path)
        try:
            if path.name == STUDIES_FILE:
                items = (data or {}).get("studies", []) if isinstance(data, dict) else data
                network.studies = [Study.model_validate(s) for s in items or []]
                continue
            site = Site.model_validate(data)
        except ValidationError as exc:
            raise _validation_error(path, exc) from exc
        if site.id in network.sites:
            raise ConfigError(f"{path}: field id: site {site.id} defined twice")
        network.sites[site.id] = site
        for facility in site.facilities:
            network.by_facility[facility.upper()] = site
    return network
