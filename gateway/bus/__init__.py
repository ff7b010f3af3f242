"""The bus: outbox relay to Kafka (or the embedded log) and the hub projector.

``start_bus_components(settings, store, role)`` is what ``gateway serve`` calls.
"""

from gateway.bus.base import (
    CONTENT_TYPE,
    Bus,
    BusRecord,
    Consumer,
    Delivery,
    TopicPartition,
    inbound_headers,
    key_for,
    new_traceparent,
    topic_for,
)
from gateway.bus.components import BusComponents, make_bus, start_bus_components
from gateway.bus.settings import BusSettings

__all__ = [
    "CONTENT_TYPE", "Bus", "BusComponents", "BusRecord", "BusSettings", "Consumer", "Delivery",
    "TopicPartition", "inbound_headers", "key_for", "make_bus", "new_traceparent",
    "start_bus_components", "topic_for",
]
