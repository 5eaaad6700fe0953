"""Every log line is JSON with a time and a level: the services' own and the libraries'."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator

import pytest
import structlog

from ipmg_shared.logging import configure_logging, get_logger


@pytest.fixture
def restored_logging() -> Iterator[None]:
    root = logging.getLogger()
    handlers, level, config = root.handlers[:], root.level, structlog.get_config()
    yield
    root.handlers[:] = handlers
    root.setLevel(level)
    structlog.configure(**config)


def test_a_library_warning_is_a_json_line_with_time_level_and_logger(
    restored_logging: None, capsys: pytest.CaptureFixture[str]
) -> None:
    configure_logging("INFO", json=True)
    logging.getLogger("aiokafka.consumer.group_coordinator").warning(
        "Heartbeat failed for group %s because it is rebalancing", "ipmg.reporting"
    )
    logging.getLogger("aiokafka").info("below the libraries' level: not shown")
    get_logger("ipmg.test").info("service_started", service="reporting")

    lines = [json.loads(line) for line in capsys.readouterr().err.splitlines()]

    assert [line["event"] for line in lines] == [
        "Heartbeat failed for group ipmg.reporting because it is rebalancing",
        "service_started",
    ]
    library, own = lines
    assert library["level"] == "warning"
    assert library["logger"] == "aiokafka.consumer.group_coordinator"
    assert library["timestamp"].endswith("Z")
    assert (own["service"], own["level"]) == ("reporting", "info")
