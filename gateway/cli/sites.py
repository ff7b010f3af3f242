"""``gateway sites …``: the integrator's commands.

    gateway sites new ID [--dir DIR]     scaffold a site file, a sample and its expected bundle
    gateway sites check [DIR]            validate every site file (file, line, field on error)
    gateway sites test ID [--dir DIR]    run the site's samples, diff against expected bundles
    gateway sites schema [--write]       the JSON schema of site files
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from gateway.adapters import golden
from gateway.adapters.loader import EXAMPLE_SITES, STUDIES_FILE, Network, load_network
from gateway.adapters.site import Site
from gateway.errors import ConfigError, GatewayError

SCHEMA_FILE = Path(__file__).resolve().parents[2] / "schemas" / "site.schema.json"
SAMPLE_ORU = (
    "MSH|^~\\&|LIS|{facility}|GATEWAY|PLAGENCELL|20260115083000||ORU^R01^ORU_R01|{id}-0001|P|2.5.1\r"
    "PID|1||000123^^^{facility}^MR||Rossi^Mario||19600101|M\r"
    "OBR|1|ORD1^LIS|FIL1^LIS|CRP^C reactive protein^L|||20260115080000\r"
    "OBX|1|NM|CRP^C reactive protein^L||12.5|mg/L^mg/L^UCUM|0-5|H|||F|||20260115080000\r"
)
SITE_TEMPLATE = """\
# Site file: {name}. See docs/adding-a-site.md.
id: {id}
name: "{name}"
kind: {kind}
facilities: [{facility}]      # MSH-4 (HD.1) values this site sends
timezone: Europe/Rome
identifiers:
  mrn_authorities: [{facility}]
# Local lab code -> LOINC, or the network CodeSystem when LOINC has no code.
code_map:
  "CRP": {{system: "http://loinc.org", code: "1988-5",
          display: "C reactive protein [Mass/volume] in Serum or Plasma", unit: "mg/L"}}
unit_map: {{}}
study_aliases: {{}}
"""


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser("sites", help="site files: new, check, test, schema",
                                   description=__doc__,
                                   formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="sites_command", metavar="ACTION", required=True)
    new = sub.add_parser("new", help="scaffold a site")
    new.add_argument("id")
    new.add_argument("--dir", type=Path, default=EXAMPLE_SITES)
    new.add_argument("--name", default=None)
    new.add_argument("--kind", choices=["hospital", "cell-factory"], default="hospital")
    new.add_argument("--facility", default=None, help="MSH-4 value (default: ID upper-case)")
    check = sub.add_parser("check", help="validate the site files of a directory")
    check.add_argument("dir", nargs="?", type=Path, default=EXAMPLE_SITES)
    test = sub.add_parser("test", help="run a site's samples against the expected bundles")
    test.add_argument("id")
    test.add_argument("--dir", type=Path, default=EXAMPLE_SITES)
    test.add_argument("--update", action="store_true", help="rewrite the expected bundles")
    schema = sub.add_parser("schema", help="print (or --write) schemas/site.schema.json")
    schema.add_argument("--write", action="store_true")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    action = {"new": new_site, "check": check_sites, "test": test_site, "schema": schema_cmd}
    try:
        return action[args.sites_command](args)
    except ConfigError as exc:
        sys.stderr.write(f"{exc.message}\n")
        return 1


def site_schema() -> dict[str, Any]:
    schema = Site.model_json_schema()
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["$id"] = "https://plagencell.example.org/schemas/site.schema.json"
    return schema


def schema_text() -> str:
    return json.dumps(site_schema(), indent=2, ensure_ascii=False) + "\n"


def schema_cmd(args: argparse.Namespace) -> int:
    if args.write:
        SCHEMA_FILE.parent.mkdir(parents=True, exist_ok=True)
        SCHEMA_FILE.write_text(schema_text(), encoding="utf-8")
        sys.stdout.write(f"wrote {SCHEMA_FILE}\n")
    else:
        sys.stdout.write(schema_text())
    return 0


def check_sites(args: argparse.Namespace) -> int:
    network = load_network(args.dir)
    for site_id, path in sorted(network.files.items()):
        site = network.sites[site_id]
        sys.stdout.write(f"ok  {path.name}: {site_id} ({site.kind}), facilities "
                         f"{', '.join(site.facilities)}, {len(site.code_map)} codes\n")
    if not (Path(args.dir) / STUDIES_FILE).is_file():
        sys.stdout.write(f"warn {STUDIES_FILE}: missing in {args.dir}: no network studies, "
                         "so study aliases are not checked and no message can name a known study\n")
    sys.stdout.write(f"{len(network.sites)} sites, {len(network.studies)} studies: valid\n")
    return 0


def test_site(args: argparse.Namespace) -> int:
    network = load_network(args.dir)
    site = network.sites.get(args.id)
    if site is None:
        raise ConfigError(f"no site {args.id!r} in {args.dir}")
    found = golden.samples(network, site)
    if not found:
        sys.stdout.write(f"{args.id}: no samples in {golden.samples_dir(network, site)}\n")
        return 1
    failed = sum(not _test_sample(network, site, sample, args.update) for sample in found)
    sys.stdout.write(f"{len(found) - failed} of {len(found)} samples match\n")
    return 1 if failed else 0


def _test_sample(network: Network, site: Site, sample: Path, update: bool) -> bool:
    """One line per sample (ok / FAIL with position and reason / new); True when it passes."""
    if not update and not golden.expected_path(sample).exists():
        sys.stdout.write(f"new  {sample.name}: no expected bundle yet: review the output of "
                         f"'gateway convert --sites {network.directory} {sample}', then run "
                         "with --update\n")
        return False
    try:
        differences = golden.check_sample(network, site, sample, update=update)
    except GatewayError as exc:
        where = getattr(exc, "location", None)
        text = exc.message if where is None or exc.message.startswith(where.segment) else (
            f"{where}: {exc.message}")
        sys.stdout.write(f"FAIL {sample.name}: {text}\n")
        return False
    sys.stdout.write(f"{'FAIL' if differences else 'ok  '} {sample.name}\n")
    for d in differences[:50]:
        sys.stdout.write(f"     {d}\n")
    return not differences


def new_site(args: argparse.Namespace) -> int:
    site_id, directory = args.id, Path(args.dir)
    facility = args.facility or site_id.upper()
    path = directory / f"{site_id}.yaml"
    if path.exists():
        raise ConfigError(f"{path} exists already")
    directory.mkdir(parents=True, exist_ok=True)
    path.write_text(SITE_TEMPLATE.format(id=site_id, name=args.name or site_id,
                                         kind=args.kind, facility=facility), encoding="utf-8")
    network = load_network(directory)  # the new file must load with the others
    samples = directory / "samples" / site_id
    samples.mkdir(parents=True, exist_ok=True)
    sample = samples / "example-oru.hl7"
    sample.write_text(SAMPLE_ORU.format(facility=facility, id=site_id.upper()), encoding="utf-8")
    golden.check_sample(network, network.sites[site_id], sample, update=True)
    sys.stdout.write(f"created {path}\n        {sample}\n        {golden.expected_path(sample)}\n"
                     f"next: edit the code_map, add real samples, run "
                     f"'gateway sites test {site_id} --dir {directory}'\n")
    return 0
