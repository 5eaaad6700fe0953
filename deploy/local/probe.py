"""Does the local infrastructure answer? A real request, bounded, one clear line.

Usage (from the repository root):

    uv run --frozen python deploy/local/probe.py kafka|postgres [--timeout S] [--once]
                                                 [--quiet] [--watch-pid PID]
    uv run --frozen python deploy/local/probe.py kafka|postgres --print-config

kafka     a real metadata request (AIOKafkaAdminClient start + describe_cluster) to
          KAFKA_BOOTSTRAP_SERVERS (default 127.0.0.1:${IPMG_KAFKA_PORT:-9092}).
postgres  a real ``SELECT 1`` through asyncpg with DATABASE_URL (default
          postgresql://postgres:postgres@127.0.0.1:${IPMG_PG_PORT:-5432}/postgres).

Retries until --timeout (default 60 s). --once makes one attempt (default timeout 3 s), which
the scripts use to decide whether a server already answers. --watch-pid stops retrying as soon
as that process has exited (the scripts pass the server they just started).
--print-config prints the resolved settings as key=value lines for deploy/local/*.sh.

Exit 0 when it answers; 1 with ONE line on stderr when it does not; 2 on a configuration error.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import functools
import logging
import os
import sys
import time
import warnings
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from urllib.parse import unquote, urlsplit

LOCAL_HOSTS = {"127.0.0.1", "localhost", "::1"}
ONCE_DEFAULT_TIMEOUT = 3.0
WAIT_DEFAULT_TIMEOUT = 60.0
ATTEMPT_CAP = 5.0  # one attempt never waits longer than this while retrying


class ConfigError(Exception):
    """The environment names an impossible configuration."""


class Permanent(Exception):
    """The server answered, and waiting will not change its answer (wrong password...)."""


class _LastProblem(logging.Handler):
    """aiokafka logs the real reason ("Connect call failed ...") and raises a vague one."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.message: str | None = None

    def emit(self, record: logging.LogRecord) -> None:
        try:
            self.message = record.getMessage()
        except Exception:  # a broken log record must not break the probe
            self.message = None


_LAST = _LastProblem()


def _quiet_libraries() -> None:
    warnings.simplefilter("ignore")
    root = logging.getLogger()
    root.handlers[:] = [logging.NullHandler()]
    for name in ("aiokafka", "kafka", "asyncio", "asyncpg"):
        logger = logging.getLogger(name)
        logger.handlers[:] = [_LAST] if name == "aiokafka" else [logging.NullHandler()]
        logger.propagate = False


def _env_int(name: str, default: int) -> tuple[int, bool]:
    raw = os.environ.get(name, "").strip()
    if not raw:
        return default, False
    try:
        value = int(raw)
    except ValueError:
        raise ConfigError(f"{name}={raw!r} is not a port number") from None
    if not 0 < value < 65536:
        raise ConfigError(f"{name}={value} is not a port number (1-65535)")
    return value, True


# --------------------------------------------------------------------------- configuration


@dataclass(frozen=True)
class KafkaConfig:
    bootstrap: str
    host: str
    port: int
    controller_port: int
    local: bool

    def lines(self) -> list[str]:
        return [
            f"bootstrap={self.bootstrap}",
            f"host={self.host}",
            f"port={self.port}",
            f"controller_port={self.controller_port}",
            f"local={int(self.local)}",
        ]


def kafka_config() -> KafkaConfig:
    port_env, port_given = _env_int("IPMG_KAFKA_PORT", 9092)
    bootstrap = os.environ.get("KAFKA_BOOTSTRAP_SERVERS", "").strip()
    if not bootstrap:
        bootstrap = f"127.0.0.1:{port_env}"
    entries = [e.strip() for e in bootstrap.split(",") if e.strip()]
    if not entries:
        raise ConfigError(f"KAFKA_BOOTSTRAP_SERVERS={bootstrap!r} names no server")
    host, port = _split_host_port(entries[0], default_port=9092)
    local = len(entries) == 1 and host in LOCAL_HOSTS
    if local and port_given and port != port_env:
        raise ConfigError(
            f"KAFKA_BOOTSTRAP_SERVERS={bootstrap} and IPMG_KAFKA_PORT={port_env} disagree:"
            " set only one of them"
        )
    controller, _ = _env_int("IPMG_KAFKA_CONTROLLER_PORT", port + 1 if port < 65535 else 9093)
    if local and controller == port:
        raise ConfigError(
            f"IPMG_KAFKA_CONTROLLER_PORT={controller} equals the Kafka port: choose another port"
        )
    return KafkaConfig(bootstrap, host, port, controller, local)


def _split_host_port(entry: str, default_port: int) -> tuple[str, int]:
    if "://" in entry:  # tolerate PLAINTEXT://host:port
        entry = entry.split("://", 1)[1]
    if entry.startswith("["):
        host, _, rest = entry[1:].partition("]")
        port_text = rest.lstrip(":")
    elif entry.count(":") == 1:
        host, port_text = entry.split(":")
    else:
        host, port_text = entry, ""
    if not port_text:
        return host, default_port
    try:
        return host, int(port_text)
    except ValueError:
        raise ConfigError(f"{entry!r} has no valid port") from None


@dataclass(frozen=True)
class PostgresConfig:
    url: str
    host: str
    port: int
    user: str
    password: str
    dbname: str
    local: bool

    def lines(self) -> list[str]:
        return [
            f"host={self.host}",
            f"port={self.port}",
            f"user={self.user}",
            f"dbname={self.dbname}",
            f"local={int(self.local)}",
            # Last: the value may contain '=' (the shell reads key and the rest of the line).
            f"password={self.password}",
        ]

    @property
    def where(self) -> str:
        return f"{self.host}:{self.port}"


def postgres_config() -> PostgresConfig:
    port_env, port_given = _env_int("IPMG_PG_PORT", 5432)
    url = os.environ.get("DATABASE_URL", "").strip()
    if not url:
        url = f"postgresql://postgres:postgres@127.0.0.1:{port_env}/postgres"
    parts = urlsplit(url)
    if parts.scheme not in ("postgres", "postgresql"):
        raise ConfigError("DATABASE_URL must start with postgresql:// (asyncpg's URL form)")
    try:
        port = parts.port or 5432
    except ValueError:
        raise ConfigError("DATABASE_URL has an invalid port") from None
    host = parts.hostname or "127.0.0.1"
    user = unquote(parts.username or "postgres")
    password = unquote(parts.password or "")
    dbname = unquote(parts.path.lstrip("/")) or user
    for name, value in (("user", user), ("password", password), ("database", dbname)):
        if "\n" in value or "\r" in value:
            raise ConfigError(f"DATABASE_URL's {name} contains a line break")
    local = host in LOCAL_HOSTS
    if local and port_given and port != port_env:
        raise ConfigError(
            f"DATABASE_URL (port {port}) and IPMG_PG_PORT={port_env} disagree: set only one"
        )
    return PostgresConfig(url, host, port, user, password, dbname, local)


# --------------------------------------------------------------------------- one attempt


def _one_line(err: BaseException) -> str:
    text = str(err).strip() or type(err).__name__
    if isinstance(err, (TimeoutError, asyncio.TimeoutError)):
        text = "timed out"
    if _LAST.message and "bootstrap" in text:
        text = _LAST.message  # the real reason, e.g. 'Unable connect to "h:p": refused'

    text = " ".join(text.split())
    return text if len(text) <= 300 else text[:297] + "..."


async def kafka_attempt(cfg: KafkaConfig, timeout: float) -> str:
    from aiokafka.admin import AIOKafkaAdminClient

    _LAST.message = None
    ms = max(int(timeout * 1000), 500)
    from ipmg_shared.settings import Settings

    # The project's own client options: with IPMG_KAFKA_SECURITY_PROTOCOL set, it authenticates.
    options = {**Settings().kafka_client_options(), "bootstrap_servers": cfg.bootstrap}
    client = AIOKafkaAdminClient(
        **options,
        request_timeout_ms=ms,
        client_id="ipmg-probe",
    )
    try:
        async with asyncio.timeout(timeout):
            await client.start()
            cluster = await client.describe_cluster()
    finally:
        # Closing a half-open client must not hide the real result.
        with contextlib.suppress(Exception):
            async with asyncio.timeout(2):
                await client.close()
    brokers = cluster.get("brokers") or []
    return (
        f"Kafka at {cfg.bootstrap} answers "
        f"(cluster {cluster.get('cluster_id')}, {len(brokers)} broker(s))"
    )


async def postgres_attempt(cfg: PostgresConfig, timeout: float) -> str:
    import asyncpg

    permanent = (
        asyncpg.InvalidPasswordError,  # wrong password
        asyncpg.InvalidAuthorizationSpecificationError,  # no such role, pg_hba rejects
        asyncpg.InvalidCatalogNameError,  # no such database
    )
    async with asyncio.timeout(timeout + 1):
        try:
            conn = await asyncpg.connect(dsn=cfg.url, timeout=timeout, command_timeout=timeout)
        except permanent as err:
            raise Permanent(str(err)) from err
        try:
            one = await conn.fetchval("SELECT 1")
            version = await conn.fetchval("SHOW server_version")
        finally:
            await conn.close(timeout=2)
    if one != 1:
        raise RuntimeError(f"SELECT 1 returned {one!r}")
    return f"PostgreSQL {version} at {cfg.where} answers (database {cfg.dbname}, user {cfg.user})"


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie (exited, not yet reaped) still answers kill(0).
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii", errors="replace") as f:
            return f.read().rsplit(")", 1)[-1].split()[0] != "Z"
    except OSError:
        return True


async def probe(target: str, timeout: float, once: bool, watch_pid: int | None) -> tuple[bool, str]:
    attempt: Callable[[float], Awaitable[str]]
    if target == "kafka":
        kcfg = kafka_config()
        name, where = "Kafka", kcfg.bootstrap
        attempt = functools.partial(kafka_attempt, kcfg)
    else:
        pcfg = postgres_config()
        name, where = "PostgreSQL", pcfg.where
        attempt = functools.partial(postgres_attempt, pcfg)

    deadline = time.monotonic() + timeout
    last = "no attempt made"
    while True:
        remaining = deadline - time.monotonic()
        per_try = remaining if once else min(max(remaining, 0.5), ATTEMPT_CAP)
        try:
            return True, await attempt(per_try)
        except Permanent as err:
            return False, f"{name} at {where} refuses: {_one_line(err)}"
        except Exception as err:
            last = _one_line(err)
        if once or time.monotonic() >= deadline:
            break
        if watch_pid is not None and not _pid_alive(watch_pid):
            return False, f"{name} process {watch_pid} exited before {where} answered: {last}"
        await asyncio.sleep(min(0.5, max(deadline - time.monotonic(), 0)))
    within = f"{timeout:g} s"
    return False, f"{name} at {where} did not answer within {within}: {last}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("target", choices=("kafka", "postgres"))
    parser.add_argument("--timeout", type=float, default=None, help="seconds (default 60)")
    parser.add_argument("--once", action="store_true", help="one attempt (default timeout 3 s)")
    parser.add_argument("--quiet", action="store_true", help="print nothing on success")
    parser.add_argument("--watch-pid", type=int, default=None, help="give up if PID exits")
    parser.add_argument("--print-config", action="store_true", help="print resolved settings")
    args = parser.parse_args(argv)
    _quiet_libraries()

    try:
        if args.print_config:
            # Import the clients here too: this is how the scripts check the environment.
            import aiokafka  # noqa: F401
            import asyncpg  # noqa: F401

            cfg = kafka_config() if args.target == "kafka" else postgres_config()
            print("\n".join(cfg.lines()))
            return 0
        timeout = args.timeout
        if timeout is None:
            timeout = ONCE_DEFAULT_TIMEOUT if args.once else WAIT_DEFAULT_TIMEOUT
        ok, message = asyncio.run(probe(args.target, max(timeout, 0.1), args.once, args.watch_pid))
    except ConfigError as err:
        print(f"configuration error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("probe interrupted", file=sys.stderr)
        return 1
    if ok:
        if not args.quiet:
            print(message)
        return 0
    print(message, file=sys.stderr)
    return 1


if __name__ == "__main__":
    sys.exit(main())
