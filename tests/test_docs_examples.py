"""The examples of docs/research-data.md run as a reader runs them, so that the page cannot
rot: a real gateway (anonymous loopback, SQLite and PostgreSQL) fed the example sites'
sample messages with ``gateway send``, then the page's curl blocks marked
``<!-- runs: NAME -->`` in bash (curl and jq, as the page says) and its Python export
snippet in a fresh interpreter, each unchanged but for its placeholders (``<study id>``, the
base URL, ``group_id``)."""

from __future__ import annotations

import asyncio
import csv
import io
import json
import os
import re
import shutil
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from gateway.runtime import Gateway
from gateway.store.cohort import group_id
from tests.security.support import start

ROOT = Path(__file__).resolve().parents[1]
DOC = ROOT / "docs" / "research-data.md"
SAMPLES = sorted((ROOT / "gateway" / "sites" / "samples").glob("*/*.hl7"))
RUNS = re.compile(r"<!-- runs: ([\w-]+) -->\n```sh\n(.*?)```", re.S)
PYTHON = re.compile(r"```python\n(.*?)```", re.S)


@pytest.fixture
async def gateway(tmp_path: Path, database_url: str) -> AsyncIterator[Gateway]:
    gw = await start(tmp_path, None, database_url)  # no clients file: anonymous loopback
    try:
        assert gw.mllp is not None
        code, out, err = await run(sys.executable, "-m", "gateway", "send", "--port",
                                   str(gw.mllp.port), *map(str, SAMPLES), cwd=ROOT)
        assert code == 0, out + err  # every sample acknowledged AA/CA
        yield gw
    finally:
        await gw.stop()


async def run(*argv: str, cwd: Path, env: dict[str, str] | None = None,
              stdin: str | None = None) -> tuple[int, str, str]:
    """A real process beside the gateway, which keeps serving in this event loop."""
    process = await asyncio.create_subprocess_exec(
        *argv, cwd=cwd, env=env, stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    out, err = await asyncio.wait_for(
        process.communicate(stdin.encode() if stdin is not None else None), timeout=120)
    return process.returncode or 0, out.decode(), err.decode()


async def the_study_with_most_subjects(base: str) -> str:
    async with httpx.AsyncClient() as http:
        groups = (await http.get(f"{base}/Group", params={"_count": "100"})).json()
    best = max((e["resource"] for e in groups["entry"]), key=lambda g: g["quantity"])
    assert best["quantity"] > 0
    return str(best["characteristic"][0]["valueReference"]["reference"]).split("/")[1]


def reader_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "TOKEN"}  # the loopback demo
    return {**env, **extra}


def blocks() -> dict[str, str]:
    return dict(RUNS.findall(DOC.read_text(encoding="utf-8")))


async def test_the_curl_examples_export_a_study_and_run_its_views(
        gateway: Gateway, tmp_path: Path) -> None:
    for tool in ("bash", "curl", "jq"):
        assert shutil.which(tool), f"the docs' examples need {tool}"
    base = f"http://127.0.0.1:{gateway.http_port}/fhir"
    study = await the_study_with_most_subjects(base)
    examples = blocks()
    assert set(examples) == {"export-curl", "views-curl"}
    script = (examples["export-curl"] + examples["views-curl"]).replace("<study id>", study)
    work = tmp_path / "reader"
    work.mkdir()
    (work / "docs").symlink_to(ROOT / "docs")  # "from the repository's directory"
    code, out, err = await run("bash", "-euo", "pipefail", cwd=work,
                               env=reader_env(BASE=base), stdin=script)
    assert code == 0, out + err
    manifest = json.loads((work / "manifest.json").read_text())
    counts = {o["type"]: o["count"] for o in manifest["output"]}
    assert set(counts) == {"Patient", "ResearchSubject", "Observation"}
    assert all(counts.values())
    for rtype, count in counts.items():
        lines = (work / f"{rtype}.ndjson").read_text().splitlines()
        assert len(lines) == count and all(json.loads(x)["resourceType"] == rtype
                                           for x in lines)
    async with httpx.AsyncClient() as http:  # the export was deleted at the end
        status = out.strip().splitlines()[0]
        assert status.startswith(f"{base}/$export-poll/")
        assert (await http.get(status)).status_code == 404
        members = (await http.get(f"{base}/Group/{group_id(study)}")).json()["member"]
    network_ids = {m["entity"]["reference"].split("/")[1] for m in members}
    exported = {json.loads(x)["id"] for x in (work / "Patient.ndjson").read_text().splitlines()}
    assert len(exported) == len(network_ids) and not exported & network_ids  # pseudonymize
    every, cohort = (list(csv.reader(io.StringIO((work / f).read_text())))
                     for f in ("release.csv", "release-cohort.csv"))
    assert every[0] == cohort[0] and every[0][0] == "product_id"
    assert len(cohort) > 1 and {tuple(r) for r in cohort[1:]} <= {tuple(r) for r in every[1:]}
    study_column = every[0].index("study_id")
    assert {r[study_column] for r in cohort[1:]} == {study}


async def test_the_python_export_example_polls_and_downloads_the_files(
        gateway: Gateway, tmp_path: Path) -> None:
    base = f"http://127.0.0.1:{gateway.http_port}/fhir"
    study = await the_study_with_most_subjects(base)
    [snippet] = [b for b in PYTHON.findall(DOC.read_text(encoding="utf-8"))
                 if "$export" in b]
    documented = 'BASE = "http://127.0.0.1:8080/fhir"'
    assert documented in snippet
    code = f"group_id = {group_id(study)!r}\n" + snippet.replace(documented,
                                                                 f"BASE = {base!r}")
    exit_code, out, err = await run(sys.executable, "-c", code, cwd=tmp_path)
    assert exit_code == 0, out + err
    patients = (tmp_path / "Patient.ndjson").read_text().splitlines()
    observations = (tmp_path / "Observation.ndjson").read_text().splitlines()
    assert patients and observations
    ids = {json.loads(p)["id"] for p in patients}
    assert {json.loads(o)["subject"]["reference"].split("/")[1] for o in observations} <= ids
