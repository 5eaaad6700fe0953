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

# `ipmg audit watch`: how far each source's topic is verified, and what it found.
AUDIT_VERIFIED_POSITION = Gauge(
    "ipmg_audit_verified_position", "Last position verified on the source's topic", ["source"]
)
AUDIT_STORE_HEAD = Gauge(
    "ipmg_audit_store_head_position",
    "The store's head at its last comparison with the topic",
    ["source"],
)
AUDIT_SECONDS_SINCE_VERIFIED = Gauge(
    "ipmg_audit_seconds_since_verified_event",
    "Seconds since the watch last verified a new event of the source",
    ["source"],
)
AUDIT_EVENTS_VERIFIED = Counter(
    "ipmg_audit_events_verified_total", "Events verified since the watch started", ["source"]
)
AUDIT_BREAKS = Gauge(
    "ipmg_audit_breaks_found", "Breaks found in the source's record (0 or 1: it stops)", ["source"]
)
