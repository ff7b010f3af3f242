"""ORM^O01 through the running gateway (real MLLP socket): accepted with AA, its order
group's Observation stored, answered as before for types still outside the scope."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from gateway.runtime import Gateway
from tests.mapping.test_orders import msh, orm
from tests.test_runtime import err, msa, send, start_gateway


@pytest.fixture
async def gateway(tmp_path: Path, database_url: str) -> AsyncIterator[Gateway]:
    gw = await start_gateway(tmp_path, database_url)
    yield gw
    await gw.stop()


async def test_an_orm_o01_v2_3_is_acknowledged_aa_and_its_result_stored(
        gateway: Gateway) -> None:
    message = orm("2.3").replace("|O1|", "|ORM-E2E-1|", 1)
    [ack] = await send(gateway, message.encode())
    assert msa(ack) == ["AA", "ORM-E2E-1"]
    assert gateway.store is not None
    record = gateway.store.inbox_find("CPOE", "HSR", "ORM-E2E-1")
    assert record is not None and record.status == "processed"
    [ref] = [r for r in record.resource_refs if r.startswith("Observation/")]
    observation = gateway.store.read("Observation", ref.split("/")[1])
    assert observation is not None and observation["valueQuantity"]["value"] == 72.5


async def test_a_vxu_is_still_refused_with_ar_200_at_msh_9(gateway: Gateway) -> None:
    message = msh("VXU^V04", "2.5.1", "VXU-1") + "\rPID|1||MRN1^^^HSR^MR\r"
    [ack] = await send(gateway, message.encode())
    assert msa(ack) == ["AR", "VXU-1"]
    assert err(ack).startswith("MSH^1^9")
