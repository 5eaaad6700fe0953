"""What the figures were measured on: they mean nothing without it."""

from __future__ import annotations

import os
import platform
import re
import subprocess
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Any

from ipmg_shared.db import connect
from ipmg_shared.settings import Settings

REPO = Path(__file__).resolve().parents[1]
LIBRARIES = ("asyncpg", "aiokafka", "pydantic", "eventsourcing", "psycopg")


def _cpu_model() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown"


def _memory_gib() -> float:
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemTotal:"):
            return round(int(line.split()[1]) / 1024**2, 1)
    return 0.0


def _kafka_version() -> str:
    """The local broker logs its version at start; the Kafka protocol does not tell it."""
    try:
        status = subprocess.run(
            ["bash", str(REPO / "deploy/local/kafka.sh"), "status"],
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        ).stdout
    except (OSError, subprocess.TimeoutExpired):
        return "unknown"
    found = re.search(r"Apache Kafka (\S+)", status)
    return found.group(1) if found else "unknown"


def _version(package: str) -> str:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return "not installed"


async def describe(settings: Settings) -> dict[str, Any]:
    admin = await connect(settings.admin_dsn(), settings)
    try:
        postgres = await admin.fetchval("SHOW server_version")
        synchronous_commit = await admin.fetchval("SHOW synchronous_commit")
    finally:
        await admin.close()
    return {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "cpu": _cpu_model(),
        "cores": os.cpu_count(),
        "memory_gib": _memory_gib(),
        "os": f"{platform.system()} {platform.release()}",
        "postgresql": postgres.split()[0],
        "postgresql_synchronous_commit": synchronous_commit,
        "kafka": _kafka_version(),
        "python": platform.python_version(),
        "libraries": {package: _version(package) for package in LIBRARIES},
        "load_average_at_start": [round(load, 2) for load in os.getloadavg()],
    }
