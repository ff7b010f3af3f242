"""What ``gateway serve`` starts on the bus side, per role, and the /admin/bus status."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from gateway.bus.components import start_bus_components
from gateway.bus.embedded import EmbeddedBus
from gateway.bus.kafka import KafkaBus
from gateway.bus.settings import BusSettings, add_arguments, from_sources
from gateway.errors import ConfigError
from gateway.store.sql import SqlStore
from tests.bus.busutil import free_port, patient, versions, wait_until, write


async def test_role_all_without_kafka_relays_into_the_embedded_log_and_projects_into_the_hub(
        tmp_path: Path, edge_store: SqlStore, hub_store: SqlStore) -> None:
    parts = await start_bus_components(BusSettings(node_id="laptop"), edge_store, "all",
                                       hub_store=hub_store, data_dir=tmp_path)
    assert isinstance(parts.bus, EmbeddedBus)
    assert parts.projector is not None and parts.hub_relay is not None
    write(edge_store, [patient(i) for i in range(3)])
    parts.notify(3)
    assert await parts.settle(within=10)
    assert edge_store.outbox_pending() == 0 and (tmp_path / "bus.db").exists()
    assert versions(hub_store) == versions(edge_store) and len(versions(hub_store)) == 3
    status = parts.status()
    assert status["bus"] == "embedded" and status["relay"]["published"] == 3  # type: ignore[index]
    assert status["projector"]["applied"] == 3  # type: ignore[index]
    assert status["hub_relay"]["published"] == 0  # type: ignore[index]
    await parts.stop()


async def test_role_all_without_its_hub_store_is_refused(
        tmp_path: Path, edge_store: SqlStore) -> None:
    with pytest.raises(ConfigError, match="hub store"):
        await start_bus_components(BusSettings(), edge_store, "all", data_dir=tmp_path)


async def test_settle_waits_for_what_was_committed_before_it_and_no_longer(
        tmp_path: Path, edge_store: SqlStore, hub_store: SqlStore) -> None:
    parts = await start_bus_components(BusSettings(), edge_store, "all",
                                       hub_store=hub_store, data_dir=tmp_path)
    try:
        write(edge_store, [patient(i) for i in range(5)])  # nobody notified: the relay polls
        assert await parts.settle(within=10)
        assert len(versions(hub_store)) == 5  # not one by chance: settle waited for them
        assert await parts.settle(within=1)  # nothing new: at once
    finally:
        await parts.stop()


async def test_an_edge_starts_while_kafka_is_down_and_keeps_accepting_up_to_the_bound(
        edge_store: SqlStore) -> None:
    settings = BusSettings(kafka_bootstrap=f"127.0.0.1:{free_port()}", outbox_max=3,
                           kafka_request_timeout=0.5, relay_max_backoff=0.2)
    parts = await start_bus_components(settings, edge_store, "edge")
    assert isinstance(parts.bus, KafkaBus) and parts.projector is None
    assert parts.accepting()
    write(edge_store, [patient(i) for i in range(4)])
    parts.notify(4)
    assert not parts.accepting()  # 4 pending > 3: new messages get AE 207
    assert await wait_until(lambda: parts.status()["relay"]["last_error"] is not None)  # type: ignore[index]
    await parts.stop()


@pytest.mark.kafka
async def test_a_hub_projects_from_kafka_and_reports_its_lag(
        kafka_settings: BusSettings, edge_store: SqlStore, hub_store: SqlStore) -> None:
    hub = await start_bus_components(kafka_settings, hub_store, "hub")  # before any topic
    edge = await start_bus_components(kafka_settings, edge_store, "edge")
    write(edge_store, [patient(i) for i in range(6)])
    edge.notify(6)
    expected = versions(edge_store)
    assert await wait_until(lambda: versions(hub_store) == expected, deadline=20)
    assert hub.projector is not None
    assert await wait_until(lambda: hub.projector.status()["lag_total"] == 0)  # type: ignore[union-attr]
    projector = hub.status()["projector"]
    assert isinstance(projector, dict) and projector["applied"] >= 6
    assert all(name.startswith(kafka_settings.topic_prefix) for name in projector["lag"])
    await hub.stop()
    await edge.stop()


def test_settings_come_from_flags_over_environment_over_defaults() -> None:
    import argparse

    parser = argparse.ArgumentParser()
    add_arguments(parser)
    args = parser.parse_args(["--kafka-bootstrap", "k1:9092,k2:9092", "--topic-partitions", "6"])
    env = {"GATEWAY_TOPIC_PREFIX": "lombardy", "GATEWAY_TOPIC_PARTITIONS": "3",
           "GATEWAY_KAFKA_SASL_PASSWORD": "s3cret"}
    settings = from_sources(args, env)
    assert settings.kafka_bootstrap == "k1:9092,k2:9092" and settings.topic_partitions == 6
    assert settings.topic_prefix == "lombardy" and settings.outbox_max == 100_000
    assert "s3cret" not in repr(settings)


def test_bad_bus_settings_are_refused_at_start_naming_the_setting() -> None:
    with pytest.raises(ConfigError, match="SASL needs"):
        from_sources(None, {"GATEWAY_KAFKA_BOOTSTRAP": "k:9093",
                            "GATEWAY_KAFKA_SECURITY_PROTOCOL": "SASL_SSL"})
    with pytest.raises(ConfigError, match="topic_partitions"):
        from_sources(None, {"GATEWAY_TOPIC_PARTITIONS": "zero"})


async def test_stopping_publishes_what_was_committed_just_before(
        tmp_path: Path, edge_store: SqlStore) -> None:
    parts = await start_bus_components(BusSettings(), edge_store, "edge", data_dir=tmp_path)
    await asyncio.sleep(0.2)  # the relay is asleep on an empty outbox (1 s poll)
    write(edge_store, [patient(i) for i in range(3)])  # committed, nobody notified
    await parts.stop()
    assert edge_store.outbox_pending() == 0
