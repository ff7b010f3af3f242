"""Poll a site's FHIR server incrementally and pass what it returns through the site rules.

``_lastUpdated=gt<high-water mark>`` per resource type, paging by ``next`` links, OAuth2
client credentials (token refreshed before it expires and once on 401), retries with
exponential backoff on timeouts, 5xx and 429 (honouring ``Retry-After``). A malformed page
is reported and ends the round without moving the mark. Patients are pseudonymised with
the mapping's pseudonym rules (the source's ids and identifiers never travel); references
to them are rewritten; Observations and Specimens keep only what the network publishes.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from gateway.adapters.labexport.build import export_context
from gateway.adapters.loader import Network
from gateway.adapters.site import FhirSource, Site
from gateway.errors import GatewayError
from gateway.failures import FailureCounters
from gateway.mapping import datatypes as dt
from gateway.mapping import pseudonym as ps
from gateway.mapping import scrub
from gateway.mapping.context import MappingContext, Resource, resource_id
from gateway.mapping.identity import fhir_identity
from gateway.store.base import InboxRecord, Store

log = logging.getLogger(__name__)
RETRY_STATUS = frozenset({429, 500, 502, 503, 504})


class SourceError(GatewayError):
    """The FHIR source answered something unusable (after retries)."""

    retriable = True


@dataclass(slots=True)
class PollResult:
    resources: list[Resource] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    high_water: dict[str, str] = field(default_factory=dict)
    unmapped: list[tuple[str, str]] = field(default_factory=list)  # (code, system) kept
    scrubbed: dict[str, int] = field(default_factory=dict)  # marker kind → count


class TokenCache:
    """OAuth2 client-credentials token, refreshed 30 s before it expires."""

    def __init__(self, config: FhirSource, clock: Callable[[], float] = time.monotonic) -> None:
        self.config, self.clock = config, clock
        self.token: str | None = None
        self.expires = 0.0

    async def header(self, client: httpx.AsyncClient, *, force: bool = False) -> dict[str, str]:
        if self.config.token_url is None:
            return {}
        if force or self.token is None or self.clock() > self.expires - 30:
            await self._fetch(client)
        return {"Authorization": f"Bearer {self.token}"}

    async def _fetch(self, client: httpx.AsyncClient) -> None:
        secret = os.environ.get(self.config.client_secret_env or "", "")
        data = {"grant_type": "client_credentials", "client_id": self.config.client_id or ""}
        if self.config.scope:
            data["scope"] = self.config.scope
        response = await client.post(str(self.config.token_url), data=data,
                                     auth=(self.config.client_id or "", secret))
        if response.status_code != 200:
            raise SourceError(f"token endpoint answered {response.status_code}")
        body = response.json()
        self.token = body["access_token"]
        self.expires = self.clock() + float(body.get("expires_in", 300))


def _delay(response: httpx.Response | None, attempt: int) -> float:
    if response is not None and (after := response.headers.get("retry-after")):
        try:
            seconds: float = min(float(str(after)), 300.0)
            return seconds
        except ValueError:
            pass
    return min(0.5 * 2.0**attempt, 30.0)


async def get_json(client: httpx.AsyncClient, url: str, params: dict[str, str] | None,
                   tokens: TokenCache, config: FhirSource,
                   sleep: Callable[[float], Any] = asyncio.sleep) -> Any:
    """GET with auth, retries and backoff; the JSON body (SourceError when it is not)."""
    refreshed = False
    for attempt in range(config.max_retries + 1):
        response: httpx.Response | None = None
        try:
            headers = {"Accept": "application/fhir+json", **await tokens.header(client)}
            response = await client.get(url, params=params, headers=headers)
        except httpx.TransportError as exc:
            log.warning("FHIR source %s: %s (attempt %d)", url, type(exc).__name__, attempt + 1)
        else:
            if response.status_code == 401 and not refreshed and config.token_url:
                refreshed = True
                await tokens.header(client, force=True)
                continue
            if response.status_code not in RETRY_STATUS:
                break
        if attempt == config.max_retries:
            raise SourceError(f"{url}: no answer after {attempt + 1} attempts")
        await sleep(_delay(response, attempt))
    assert response is not None
    if response.status_code != 200:
        raise SourceError(f"{url}: HTTP {response.status_code}")
    try:
        return response.json()
    except json.JSONDecodeError as exc:
        raise SourceError(f"{url}: the body is not JSON") from exc


def _entries(bundle: Any, url: str) -> tuple[list[Resource], str | None]:
    if not isinstance(bundle, dict) or bundle.get("resourceType") != "Bundle":
        raise SourceError(f"{url}: not a Bundle")
    resources = []
    for n, entry in enumerate(bundle.get("entry") or []):
        resource = entry.get("resource") if isinstance(entry, dict) else None
        if not isinstance(resource, dict) or "resourceType" not in resource or "id" not in resource:
            raise SourceError(f"{url}: entry {n} has no resource with resourceType and id")
        resources.append(resource)
    nxt = next((link.get("url") for link in bundle.get("link") or []
                if isinstance(link, dict) and link.get("relation") == "next"), None)
    return resources, nxt


class FhirPoller:
    """One site's FHIR source; ``poll_once`` returns the network resources of one round."""

    def __init__(self, site: Site, pseudonym_key: bytes, state_file: Path,
                 client: httpx.AsyncClient | None = None,
                 lookup_link: Callable[[str], str | None] = lambda _k: None,
                 sleep: Callable[[float], Any] = asyncio.sleep) -> None:
        assert site.fhir_source is not None
        self.site, self.config, self.key = site, site.fhir_source, pseudonym_key
        self.state_file, self.lookup_link, self.sleep = state_file, lookup_link, sleep
        self.client = client or httpx.AsyncClient(timeout=self.config.timeout_seconds)
        self.tokens = TokenCache(self.config)
        self.new_links: dict[str, str] = {}
        self.round: PollResult = PollResult()

    def marks(self) -> dict[str, str]:
        if not self.state_file.exists():
            return {}
        data: dict[str, str] = json.loads(self.state_file.read_text(encoding="utf-8"))
        return data

    def save_marks(self, marks: dict[str, str]) -> None:
        self.state_file.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.state_file.with_suffix(".tmp")
        tmp.write_text(json.dumps(marks, indent=1), encoding="utf-8")
        tmp.replace(self.state_file)

    async def fetch_type(self, resource_type: str, since: str | None,
                         result: PollResult) -> list[Resource]:
        url: str | None = f"{self.config.base_url.rstrip('/')}/{resource_type}"
        params: dict[str, str] | None = {"_count": str(self.config.page_size),
                                         "_sort": "_lastUpdated"}
        if since and params is not None:
            params["_lastUpdated"] = f"gt{since}"
        found: list[Resource] = []
        while url:
            page = await get_json(self.client, url, params, self.tokens, self.config, self.sleep)
            resources, url = _entries(page, url)
            found.extend(resources)
            params = None  # the next link carries its own query
        return found

    async def poll_once(self) -> PollResult:
        """Fetch everything changed since the marks; on error keep the marks of that type."""
        result = self.round = PollResult(high_water=self.marks())
        ctx = export_context(self.site, self.key, "", self.lookup_link)
        people: list[Resource] = []
        for resource_type in self.config.resource_types:
            try:
                fetched = await self.fetch_type(resource_type, result.high_water.get(
                    resource_type), result)
            except SourceError as exc:
                result.errors.append(f"{resource_type}: {exc.message}")
                continue
            people += [x for x in fetched if x.get("resourceType") == "Patient"]
            result.resources.extend(r for r in (self.convert(ctx, x) for x in fetched) if r)
            stamps = [x.get("meta", {}).get("lastUpdated") for x in fetched]
            if any(stamps):
                result.high_water[resource_type] = max(s for s in stamps if s)
        self.new_links = dict(ctx.new_links)
        self._scrub(result, people)
        return result

    def _scrub(self, result: PollResult, patients: list[Resource]) -> None:
        """Code texts, displays and values of the source as the HL7 path scrubs them; the
        identity is that of the round's Patients (names, identifiers, telecom, birthDate)."""
        if self.site.privacy.free_text == "keep":
            return
        scrubber = scrub.Scrubber(fhir_identity(self.site, patients))
        scrub.scrub_resources(result.resources, scrubber)
        result.scrubbed = dict(scrubber.counts)

    # -- conversion -----------------------------------------------------------------------
    def convert(self, ctx: MappingContext, resource: Resource) -> Resource | None:
        kind = resource["resourceType"]
        if kind == "Patient":
            return self._patient(ctx, resource)
        if kind in ("Observation", "Specimen"):
            return self._rewrite(ctx, resource)
        return None

    def _pseudonym(self, ctx: MappingContext, source_id: str) -> str:
        authority = f"fhir:{self.config.base_url}"
        resolution = ps.resolve(ctx, [ps.Cx(source_id, authority, "", "Patient.id")])
        assert resolution is not None
        ps.learn(ctx, resolution.links)
        return resolution.pseudonym

    def _patient(self, ctx: MappingContext, patient: Resource) -> Resource:
        from gateway.mapping.context import PSEUDONYM_SYSTEM, SECURITY_PSEUDED

        pseudonym = self._pseudonym(ctx, str(patient["id"]))
        out: Resource = {"resourceType": "Patient", "id": pseudonym,
                         "meta": {"security": [dict(SECURITY_PSEUDED)]},
                         "identifier": [{"system": PSEUDONYM_SYSTEM, "value": pseudonym}]}
        if patient.get("gender"):
            out["gender"] = patient["gender"]
        if isinstance(patient.get("birthDate"), str):
            out["birthDate"] = patient["birthDate"][:4]
        return out

    def _rewrite(self, ctx: MappingContext, resource: Resource) -> Resource | None:
        kind = resource["resourceType"]
        out = {k: v for k, v in resource.items()
               if k not in ("meta", "text", "identifier", "note", "contained", "performer")}
        out["id"] = resource_id(kind, self.site.id, "fhir", str(resource["id"]))
        subject = resource.get("subject", {}).get("reference", "")
        if subject.startswith("Patient/"):
            out["subject"] = {"reference": f"Patient/{self._pseudonym(ctx, subject[8:])}"}
        else:
            out.pop("subject", None)
        specimen = resource.get("specimen", {}).get("reference", "")
        if specimen.startswith("Specimen/"):
            out["specimen"] = {"reference": "Specimen/" + resource_id(
                "Specimen", self.site.id, "fhir", specimen[9:])}
        out.pop("parent", None)
        if isinstance(out.get("code"), dict):
            out["code"] = self._mapped_code(out["code"])
            if not self._known(kind, resource["id"], out["code"]):
                return None
        return out

    def _known(self, kind: str, source_id: object, code: Resource) -> bool:
        """An Observation whose code has no standard coding after the code map: kept (its
        local codes listed for /admin/unmapped-codes), or refused when the site is strict."""
        if kind != "Observation" or not code.get("coding") or dt.has_standard_coding(code):
            return True
        if self.site.unmapped_codes == "strict":
            self.round.errors.append(f"{kind}/{source_id}: local code not in the site's "
                                     "code_map (site unmapped_codes: strict): not stored")
            return False
        self.round.unmapped += [(str(c.get("code", "")), "local") for c in code["coding"]
                                if c.get("code")]
        return True

    def _mapped_code(self, concept: Resource) -> Resource:
        """The site's code map applies as for HL7: the mapped coding first, the local kept."""
        codings = list(concept.get("coding") or [])
        for coding in list(codings):
            entry = self.site.code_map.get(str(coding.get("code", "")))
            if entry is not None and coding.get("system") != entry.system:
                mapped = {"system": entry.system, "code": entry.code}
                if entry.display:
                    mapped["display"] = entry.display
                if mapped not in codings:
                    codings.insert(0, mapped)
        return {**concept, "coding": codings} if codings else concept


def store_result(store: Store, site: Site, result: PollResult, links: dict[str, str],
                 received: str) -> int:
    """Commit one round's resources with an inbox record (transport ``fhir``); changed count."""
    raw = json.dumps({"marks": result.high_water, "errors": result.errors,
                      "unmapped": result.unmapped}).encode()
    control = "fhir:" + hashlib.sha256(raw + received.encode()).hexdigest()
    changed, refs = 0, []
    with store.transaction() as tx:
        for resource in result.resources:
            change = tx.put(resource, source=f"urn:plagencell:site:{site.id}",
                            headers={"site": site.id, "message-id": control})
            changed += int(change.changed)
            refs.append(f"{change.resource_type}/{change.id}/_history/{change.version_id}")
        for key, pseudonym in links.items():
            tx.link_put(key, pseudonym)
        issues: list[dict[str, Any]] = [
            {"severity": "error", "code": "processing", "diagnostics": e} for e in result.errors]
        issues += [{"severity": "warning", "code": "code-invalid", "location": [f"unmapped[{n}]"],
                    "diagnostics": "local code not in the site's code_map: kept"}
                   for n in range(len(result.unmapped))]
        if result.scrubbed:
            kinds = ", ".join(f"{k} {n}" for k, n in sorted(result.scrubbed.items()))
            issues.append({"severity": "information", "code": "informational",
                           "location": ["free text"],
                           "diagnostics": f"identity removed from sender text: {kinds}"})
        tx.inbox_add(InboxRecord("FHIR-SOURCE", site.facilities[0], control, raw, received,
                                 "fhir", site=site.id, message_type="FHIR-POLL",
                                 unmapped=list(result.unmapped),
                                 status="error" if result.errors else "processed",
                                 report={"resourceType": "OperationOutcome", "issue": issues or [
                                     {"severity": "information", "code": "informational",
                                      "diagnostics": f"{len(result.resources)} resources"}]},
                                 resource_refs=refs))
    return changed


async def run_source(poller: FhirPoller, store: Store, now: Callable[[], str],
                     failures: FailureCounters | None = None) -> None:
    """Poll forever every ``poll_seconds``; the mark moves only after the commit. A round
    that fails, for whatever reason, is logged, counted and tried again next time."""
    while True:
        try:
            result = await poller.poll_once()
            await asyncio.to_thread(store_result, store, poller.site, result,
                                    poller.new_links, now())
            poller.save_marks(result.high_water)
        except (GatewayError, OSError, httpx.HTTPError) as exc:
            log.error("FHIR source of site %s: %s", poller.site.id, exc)
            _count(failures, poller, exc, now)
        except Exception as exc:  # noqa: BLE001 - a bug on one answer never ends the polling
            log.error("FHIR source of site %s: round failed (%s)", poller.site.id,
                      type(exc).__name__)
            _count(failures, poller, exc, now)
        await asyncio.sleep(poller.config.poll_seconds)


def _count(failures: FailureCounters | None, poller: FhirPoller, exc: Exception,
           now: Callable[[], str]) -> None:
    if failures is not None:
        failures.record(f"fhir-source/{poller.site.id}", type(exc).__name__, "poll", now())


def _link(store: Store, key: str) -> str | None:
    with store.transaction() as tx:
        return tx.link_get(key)


def start_fhir_sources(network: Network, store: Store, pseudonym_key: bytes, data_dir: Path,
                       now: Callable[[], str], failures: FailureCounters | None = None
                       ) -> list[asyncio.Task[None]]:
    """One polling task per site with an enabled ``fhir_source`` (call in the running loop)."""
    tasks = []
    for site in network.sites.values():
        if site.fhir_source is None or not site.fhir_source.enabled:
            continue
        poller = FhirPoller(site, pseudonym_key, Path(data_dir) / "fhir-sources" /
                            f"{site.id}.json", lookup_link=lambda key: _link(store, key))
        tasks.append(asyncio.create_task(run_source(poller, store, now, failures),
                                         name=f"fhir-source-{site.id}"))
    return tasks
