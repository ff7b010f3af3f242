"""Load the site files and the network studies file from a directory.

A directory holds one ``<site-id>.yaml`` per site and one ``studies.yaml``. The YAML is
composed into a node tree first so that every error can name the file, the LINE and the
field (``sites/hsr.yaml:14: code_map.LOCALCRP.system: Field required``); unknown fields,
duplicate keys, a facility claimed by two sites and study aliases naming no network study
are refused, and the gateway does not start (``ConfigError``).

``reload_network`` re-reads the directory for SIGHUP: it validates first and keeps the
running configuration when the new one is wrong.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from gateway.adapters.site import Site, StudiesFile, Study
from gateway.errors import ConfigError

log = logging.getLogger(__name__)

STUDIES_FILE = "studies.yaml"
EXAMPLE_SITES = Path(__file__).resolve().parent.parent / "sites"
SKIPPED_PREFIXES = ("codesystem-", "_")
STR_TAG = "tag:yaml.org,2002:str"


@dataclass(slots=True)
class Network:
    sites: dict[str, Site] = field(default_factory=dict)
    by_facility: dict[str, Site] = field(default_factory=dict)
    studies: list[Study] = field(default_factory=list)
    directory: Path | None = None
    files: dict[str, Path] = field(default_factory=dict)  # site id → its file

    def site_for(self, facility: str) -> Site | None:
        return self.by_facility.get(facility.upper())

    def study_for(self, code: str) -> Study | None:
        """A network study by id, identifier value or alias (case-insensitive)."""
        wanted = code.strip().upper()
        for study in self.studies:
            names = [study.id, *study.aliases, *(i.value for i in study.identifiers)]
            if wanted in (n.upper() for n in names):
                return study
        return None

    def replace_with(self, other: Network) -> None:
        """Take over ``other``'s configuration in place (holders of this object see it)."""
        self.sites, self.by_facility = other.sites, other.by_facility
        self.studies, self.files = other.studies, other.files
        self.directory = other.directory


# -- YAML with line numbers ---------------------------------------------------------------

def _compose(path: Path) -> tuple[Any, yaml.Node | None]:
    """(data, node tree) of a YAML file; duplicate keys are errors."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: cannot read: {exc}", file=str(path)) from exc
    loader = yaml.SafeLoader(text)
    try:
        node = loader.get_single_node()
        if node is not None:
            _refuse_duplicate_keys(path, node)
            _keys_as_written(node)
        data = loader.construct_document(node) if node is not None else None
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark else None
        raise ConfigError(f"{path}:{line}: {exc.problem or exc.context}",
                          file=str(path), line=line) from exc
    finally:
        loader.dispose()
    return data, node


def _keys_as_written(node: yaml.Node) -> None:
    """Every unquoted mapping key is read as the text written: a local code ``0000412`` or
    ``12`` stays that string (YAML 1.1 would make them the numbers 266 and 12, ``NO`` and
    ``ON`` booleans, ``~`` null)."""
    if isinstance(node, yaml.MappingNode):
        for key, value in node.value:
            if isinstance(key, yaml.ScalarNode) and key.style is None:
                key.tag = STR_TAG
            _keys_as_written(value)
    elif isinstance(node, yaml.SequenceNode):
        for item in node.value:
            _keys_as_written(item)


def _refuse_duplicate_keys(path: Path, node: yaml.Node, where: str = "") -> None:
    if isinstance(node, yaml.MappingNode):
        seen: set[Any] = set()
        for key, value in node.value:
            name = key.value
            if name in seen:
                line = key.start_mark.line + 1
                raise ConfigError(f"{path}:{line}: {where}{name}: duplicate key",
                                  file=str(path), line=line, field=f"{where}{name}")
            seen.add(name)
            _refuse_duplicate_keys(path, value, f"{where}{name}.")
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            _refuse_duplicate_keys(path, item, f"{where}{i}.")


def node_at(node: yaml.Node | None, loc: Sequence[int | str]) -> yaml.Node | None:
    """The node a pydantic error location points at: the key node of the last field named
    (its line is where the field is written), else the deepest node that exists."""
    for depth, part in enumerate(loc):
        last = depth == len(loc) - 1
        if isinstance(node, yaml.MappingNode):
            match = next(((k, v) for k, v in node.value if k.value == str(part)), None)
            if match is None:
                return node
            node = match[0] if last else match[1]
        elif isinstance(node, yaml.SequenceNode) and isinstance(part, int):
            if part >= len(node.value):
                return node
            node = node.value[part]
        else:
            return node
    return node


def line_of(node: yaml.Node | None, loc: Sequence[int | str]) -> int | None:
    found = node_at(node, [p for p in loc if p != "[key]"])
    return found.start_mark.line + 1 if found is not None else None


def _validation_error(path: Path, exc: ValidationError, root: yaml.Node | None) -> ConfigError:
    lines = []
    first: tuple[int | None, str] | None = None
    for error in exc.errors():
        loc = [p for p in error["loc"] if isinstance(p, int | str)]
        where = ".".join(str(p) for p in loc if p != "[key]") or "(file)"
        line = line_of(root, loc)
        lines.append(f"{path}:{line}: {where}: {error['msg']}{_quote_hint(error, root, loc)}")
        first = first or (line, where)
    assert first is not None
    return ConfigError("\n".join(lines), file=str(path), line=first[0], field=first[1])


def _quote_hint(error: Any, root: yaml.Node | None, loc: list[int | str]) -> str:
    """For a text field that YAML read as a number or boolean: say to quote it, with the
    text as written (``0000412``, not the 266 YAML made of it)."""
    if error.get("type") != "string_type" or isinstance(error.get("input"), str):
        return ""
    found = node_at(root, [*loc, ""])  # the value node, not the key
    written = found.value if isinstance(found, yaml.ScalarNode) else str(error.get("input"))
    kind = "boolean" if isinstance(error.get("input"), bool) else "number"
    return f' (YAML read {written} as a {kind}: quote it, "{written}")'


# -- the network --------------------------------------------------------------------------

def _load_studies(path: Path) -> list[Study]:
    data, root = _compose(path)
    if isinstance(data, list):  # a bare list of studies is accepted too
        data = {"studies": data}
    try:
        return StudiesFile.model_validate(data or {}).studies
    except ValidationError as exc:
        raise _validation_error(path, exc, root) from exc


def load_site(path: Path | str) -> tuple[Site, yaml.Node | None]:
    path = Path(path)
    data, root = _compose(path)
    try:
        return Site.model_validate(data), root
    except ValidationError as exc:
        raise _validation_error(path, exc, root) from exc


def _check_site(network: Network, site: Site, path: Path, root: yaml.Node | None) -> None:
    if site.id in network.sites:
        raise ConfigError(f"{path}:{line_of(root, ['id'])}: id: site {site.id} is already "
                          f"defined in {network.files[site.id]}", file=str(path), field="id")
    for i, facility in enumerate(site.facilities):
        other = network.by_facility.get(facility.upper())
        if other is not None:
            line = line_of(root, ["facilities", i])
            raise ConfigError(
                f"{path}:{line}: facilities.{i}: facility {facility} already belongs to site "
                f"{other.id} ({network.files[other.id]})",
                file=str(path), line=line, field=f"facilities.{i}")
    if site.adapter:
        from gateway.adapters.hooks import load_adapter

        try:
            load_adapter(site.adapter)
        except ConfigError as exc:
            line = line_of(root, ["adapter"])
            raise ConfigError(f"{path}:{line}: adapter: {exc.message}", file=str(path),
                              line=line, field="adapter") from exc
    for alias, target in site.study_aliases.items():
        if network.studies and network.study_for(target) is None:
            line = line_of(root, ["study_aliases", alias])
            raise ConfigError(
                f"{path}:{line}: study_aliases.{alias}: {target} is no study of {STUDIES_FILE}",
                file=str(path), line=line, field=f"study_aliases.{alias}")


def site_files(directory: Path) -> list[Path]:
    return [p for p in sorted(directory.glob("*.yaml"))
            if p.name != STUDIES_FILE and not p.name.startswith(SKIPPED_PREFIXES)]


def load_network(directory: Path | str = EXAMPLE_SITES) -> Network:
    directory = Path(directory)
    if not directory.is_dir():
        raise ConfigError(f"sites directory {directory} does not exist", file=str(directory))
    network = Network(directory=directory)
    if (directory / STUDIES_FILE).is_file():
        network.studies = _load_studies(directory / STUDIES_FILE)
    for path in site_files(directory):
        site, root = load_site(path)
        _check_site(network, site, path, root)
        network.sites[site.id] = site
        network.files[site.id] = path
        for facility in site.facilities:
            network.by_facility[facility.upper()] = site
    return network


def reload_network(current: Network, directory: Path | str | None = None) -> ConfigError | None:
    """SIGHUP: re-read the site files into ``current`` (in place, so every holder sees the
    new sites). On a bad file nothing changes; the error is logged and returned."""
    target = directory if directory is not None else current.directory or EXAMPLE_SITES
    try:
        fresh = load_network(target)
    except ConfigError as exc:
        log.error("site files not reloaded, keeping the running configuration: %s", exc)
        return exc
    current.replace_with(fresh)
    log.info("site files reloaded from %s: %d sites", target, len(fresh.sites))
    return None
