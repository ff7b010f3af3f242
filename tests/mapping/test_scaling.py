"""Issue 15, linear time: one ORU^R01 with thousands of OBX carrying the same code.

The Observation id of a repeated (order, OBX-3, OBX-4) takes an ordinal (2, 3, …); finding
it used to walk every id taken before (4,000 OBX: 8 million hashes, 22 s at ingest)."""

from __future__ import annotations

import time

from gateway.hl7.parser import parse
from gateway.mapping.context import MappingContext, resource_id
from gateway.mapping.results import order_key
from tests.mapping.results_helpers import SITE, mapped, message, of_type

ORC = "ORC|RE|ORD-55123^HPG23-CPOE|LAB-998877^HPG23-LAB"
OBR = "OBR|1|ORD-55123^HPG23-CPOE|LAB-998877^HPG23-LAB|CART-MON^CAR-T panel^L|||20261127061000"
# every OBX the same OBX-3 (1988-5) and an empty OBX-4: only the ordinal tells them apart
CRP = "OBX|{n}|NM|1988-5^CRP^LN||48.2|mg/L^mg/L^UCUM|0.0-5.0|H|||F"


def same_code(n: int) -> str:
    return message("ORU^R01^ORU_R01", ORC, OBR, *(CRP.format(n=i) for i in range(1, n + 1)))


def test_repeated_codes_get_ordinal_ids_in_message_order() -> None:
    ctx = mapped(same_code(3))
    ids = [o["id"] for o in of_type(ctx, "Observation")]
    probe = MappingContext(SITE, parse(same_code(1)), ctx.pseudonym_key, ctx.received)
    # OBX-3 as sent (coding-system name, code), never its mapping
    key = (order_key(probe, None, parse(same_code(1)).all("OBR")[0]), "LN|1988-5", "")
    assert ids == [resource_id("Observation", SITE.id, *key),
                   resource_id("Observation", SITE.id, *key, "2"),
                   resource_id("Observation", SITE.id, *key, "3")]


def test_four_thousand_obx_with_the_same_code_map_in_linear_time() -> None:
    small, large = same_code(400), same_code(4_000)
    start = time.perf_counter()
    mapped(small)
    t_small = time.perf_counter() - start
    start = time.perf_counter()
    ctx = mapped(large)
    t_large = time.perf_counter() - start
    assert len({o["id"] for o in of_type(ctx, "Observation")}) == 4_000
    # ten times the OBX, at most ~ten times the time (quadratic was a hundred times);
    # the absolute floor keeps a loaded machine's jitter on the small run from failing it
    assert t_large < max(25 * t_small, 2.0), (t_small, t_large)
