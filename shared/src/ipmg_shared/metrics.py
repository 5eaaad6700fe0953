"""Prometheus metrics every service exposes on /metrics."""

from __future__ import annotations

from prometheus_client import Counter, Gauge

EVENTS_APPENDED = Counter(
    "ipmg_events_appended_total", "Events appended to the service's event store", ["source"]
)
EVENTS_PUBLISHED = Counter(
    "ipmg_events_published_total", "Events the relay published to Kafka", ["source"]
)
RELAY_LAG = Gauge("ipmg_relay_lag_events", "Stored events not yet published to Kafka", ["source"])
EVENTS_CONSUMED = Counter(
    "ipmg_events_consumed_total",
    "Events a consumer handled, by outcome (applied, duplicate, dead_lettered)",
    ["consumer", "source", "outcome"],
)
CONSUMER_LAG = Gauge(
    "ipmg_consumer_lag_messages",
    "Messages behind the end of the topic partition",
    ["consumer", "topic", "partition"],
)
DEAD_LETTERS = Counter(
    "ipmg_dead_letters_total", "Messages sent to the dead-letter topic", ["consumer", "reason"]
)
STREAM_GAPS = Counter(
    "ipmg_stream_version_gaps_total",
    "Events that arrived with a stream version beyond the next expected one",
    ["consumer", "source"],
)
