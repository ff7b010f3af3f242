"""``gateway convert FILE… [--site ID] [--sites DIR] [--report [OUT]] [--key-file F]``

Offline: HL7 v2 files in, one FHIR transaction Bundle (PUT entries, deterministic ids) out on
stdout. Several files (and several messages in a file) behave like messages received in
that order: identifier links learned from an earlier message apply to the later ones, and a
later version of a resource follows the earlier one in the Bundle. An entry identical to
the version already emitted is left out (a store would make no new version of it).

A message that cannot be mapped costs one line on stderr (file, message number, MSH-10,
ERR code, segment and field) and a non-zero exit; the others are still converted.
``--report`` writes the conversion report (an OperationOutcome: positions, never values)
to stderr, or to OUT.
"""

from __future__ import annotations

import argparse
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

from gateway.adapters.loader import EXAMPLE_SITES, Network, load_network
from gateway.adapters.site import Site
from gateway.errors import ConfigError, InboundError, Location, UnknownSite
from gateway.hl7.parser import Message, parse, split_messages
from gateway.mapping import MappingResult, map_message
from gateway.mapping.context import ReportEntry, report_outcome
from gateway.mapping.datatypes import dtm_to_fhir
from gateway.mapping.pseudonym import KEY_FILE_ENV, read_key

DEMO_KEY = b"plagencell-gateway-demo-key-NOT-SECRET"
EPOCH = "1970-01-01T00:00:00Z"
_MSH7 = Location("MSH", 1, 7)


def register(subparsers: Any) -> None:
    p = subparsers.add_parser(
        "convert", help="convert HL7 v2 files to a FHIR R4 transaction Bundle (offline)",
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("files", nargs="+", type=Path, metavar="FILE")
    p.add_argument("--site", help="site id (default: the site whose facility is MSH-4)")
    p.add_argument("--sites", type=Path, default=EXAMPLE_SITES,
                   help="directory of site files and studies.yaml")
    p.add_argument("--report", nargs="?", const="-", default=None, metavar="OUT",
                   help="write the conversion report (OperationOutcome) to stderr or OUT")
    p.add_argument("--key-file", type=Path,
                   help=f"pseudonym key file (default: ${KEY_FILE_ENV}, else a demo key)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    try:
        network = load_network(args.sites)
        key = _key(args.key_file)
        site = _fixed_site(network, args.site)
    except ConfigError as exc:
        _say(str(exc))
        return 2
    run_ = Conversion(network, key, site)
    for path in args.files:
        try:
            data = path.read_bytes()
        except OSError as exc:
            _say(f"{path}: cannot be read: {exc.strerror}")
            return 2
        run_.convert_file(path, data)
    sys.stdout.buffer.write(dump(run_.bundle()) + b"\n")
    if args.report is not None:
        _write_report(args.report, run_.report)
    return 1 if run_.failures else 0


def _key(key_file: Path | None) -> bytes:
    if key_file is not None:
        return read_key(key_file)
    configured = os.environ.get(KEY_FILE_ENV)
    if configured:
        return read_key(Path(configured))
    _say(f"warning: no --key-file and no ${KEY_FILE_ENV}: using the public demo key; "
         "these pseudonyms are NOT protected")
    return DEMO_KEY


def _fixed_site(network: Network, site_id: str | None) -> Site | None:
    if site_id is None:
        return None
    site = network.sites.get(site_id)
    if site is None:
        raise ConfigError(f"--site {site_id}: no such site in the sites directory")
    return site


@dataclass(slots=True)
class Conversion:
    """Messages converted in order, sharing one link table, collected into one Bundle."""

    network: Network
    key: bytes
    site: Site | None = None
    links: dict[str, str] = field(default_factory=dict)
    entries: list[dict[str, Any]] = field(default_factory=list)
    emitted: dict[tuple[str, str], bytes] = field(default_factory=dict)
    report: list[ReportEntry] = field(default_factory=list)
    failures: int = 0

    def convert_file(self, path: Path, data: bytes) -> None:
        for n, text in enumerate(split_messages(data), start=1):
            where = f"{path.name}[{n}]"
            try:
                message = parse(text)
                result = self.convert(message)
            except InboundError as exc:
                self.failures += 1
                _say(f"{path}: message {n}: {describe(exc)}")
                self.report.append(ReportEntry("error", "processing", where, describe(exc)))
                continue
            self.report.extend(ReportEntry(e.severity, e.code, f"{where} {e.location}",
                                           e.diagnostics) for e in result.report)

    def convert(self, message: Message) -> MappingResult:
        site = self.site or self.network.site_for(message.sending_facility)
        if site is None:
            raise UnknownSite("MSH-4: sending facility is not a configured site (use --site)",
                              segment="MSH", field=4)
        result = map_message(message, site, pseudonym_key=self.key,
                             received=received_instant(message, site),
                             studies=self.network.studies, lookup_link=self.links.get)
        self.links.update(result.new_links)
        for resource in result.resources:
            self._emit(resource, create_only=(resource["resourceType"], resource["id"])
                       in result.create_only)
        return result

    def _emit(self, resource: dict[str, Any], *, create_only: bool) -> None:
        rkey = (resource["resourceType"], resource["id"])
        body = dump(resource)
        if self.emitted.get(rkey) == body or (create_only and rkey in self.emitted):
            return
        self.emitted[rkey] = body
        request: dict[str, str] = {"method": "PUT", "url": f"{rkey[0]}/{rkey[1]}"}
        if create_only:
            request["ifNoneMatch"] = "*"  # create only: never overwrite a richer version
        self.entries.append({"resource": resource, "request": request})

    def bundle(self) -> dict[str, Any]:
        return {"resourceType": "Bundle", "type": "transaction", "entry": self.entries}


def received_instant(message: Message, site: Site) -> str:
    """Offline there is no arrival time: MSH-7 (in the site's zone when it has none) stands
    in, padded to an instant; the epoch when MSH-7 is unusable. Deterministic either way."""
    value = message.msh.get(7)
    try:
        when = dtm_to_fhir(value, site.timezone, _MSH7) if value else ""
    except InboundError:
        when = ""
    if "T" in when:
        return when
    return (when + "-01-01")[:10] + "T00:00:00Z" if when else EPOCH


def describe(exc: InboundError) -> str:
    """"AE 101: PID-3: …": ACK code, ERR code, then the message, which names the position
    (the location is prepended when the message does not start with its segment)."""
    text = exc.message
    if exc.location and not text.startswith(exc.location.segment):
        text = f"{exc.location}: {text}"
    return f"{exc.ack_code} {exc.err_code}: {text}"


def dump(obj: Any) -> bytes:
    return orjson.dumps(obj, option=orjson.OPT_SORT_KEYS | orjson.OPT_INDENT_2)


def _write_report(out: str, entries: list[ReportEntry]) -> None:
    body = dump(report_outcome(entries)) + b"\n"
    if out == "-":
        sys.stderr.buffer.write(body)
    else:
        Path(out).write_bytes(body)


def _say(line: str) -> None:
    sys.stderr.write(f"gateway convert: {line}\n")

