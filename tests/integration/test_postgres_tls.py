"""deploy/compose.yaml's PostgreSQL TLS on a real server of the test's own, without Docker.

The server takes the certificate the pki job's code issues and the compose file's pg_hba.conf;
clients connect as the services do, with the compose DATABASE_URL's ``sslmode=verify-full``.
"""

from __future__ import annotations

import asyncio
import pwd
import shutil
import ssl
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import asyncpg
import pytest

from ipmg_shared.db import connect
from ipmg_shared.pki import PkiPlan, ensure
from ipmg_shared.settings import Settings
from tests.support.processes import REPO, PrivatePostgres, private_postgres
from tests.unit.deploy.test_compose import loader_script

pytestmark = pytest.mark.infra
HOST = "127.0.0.1"


@pytest.fixture(scope="module")
def tls_postgres() -> Iterator[tuple[PrivatePostgres, Path]]:
    """A throwaway cluster with TLS on and network clients admitted over TLS only; yields the
    server and the CA bundle that vouches for it."""
    # Outside /root: the server runs as the postgres OS user and reads its key from here.
    pki = Path(tempfile.mkdtemp(prefix="ipmg-pki-", dir="/tmp"))
    pki.chmod(0o755)
    owner = pwd.getpwnam("postgres").pw_uid
    plan = PkiPlan(brokers=(), postgres_hosts=(HOST,), owners={"postgres": owner})
    ensure(pki / "ca", pki / "out", plan)
    try:
        with private_postgres() as server:
            data = server.state_dir / "postgres" / "data"
            shutil.copy(REPO / "deploy" / "postgres" / "pg_hba.conf", data / "pg_hba.conf")
            certs = pki / "out" / "postgres"
            statements = (
                f"ALTER SYSTEM SET ssl_cert_file = '{certs / 'server.crt'}'",
                f"ALTER SYSTEM SET ssl_key_file = '{certs / 'server.key'}'",
                "ALTER SYSTEM SET ssl = on",
                "SELECT pg_reload_conf()",
            )

            async def configure() -> None:
                admin = await asyncpg.connect(server.url, ssl=False)
                try:
                    for statement in statements:
                        await admin.execute(statement)
                finally:
                    await admin.close()

            asyncio.run(configure())
            yield server, pki / "out" / "public" / "ca.crt"
    finally:
        shutil.rmtree(pki, ignore_errors=True)


def verified(server: PrivatePostgres, cafile: Path) -> Settings:
    return Settings(database_url=f"{server.url}?sslmode=verify-full&sslrootcert={cafile}")


async def test_services_connect_over_verified_tls(
    tls_postgres: tuple[PrivatePostgres, Path],
) -> None:
    server, cafile = tls_postgres
    settings = verified(server, cafile)
    assert "sslmode=verify-full" in settings.service_dsn("meetings")
    connection = await connect(settings.admin_dsn("postgres"), settings)
    try:
        assert await connection.fetchval("SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()")
    finally:
        await connection.close()


async def test_a_connection_without_tls_is_refused(
    tls_postgres: tuple[PrivatePostgres, Path],
) -> None:
    server, _ = tls_postgres
    with pytest.raises(asyncpg.InvalidAuthorizationSpecificationError, match="no encryption"):
        await asyncpg.connect(f"{server.url}?sslmode=disable")


async def test_a_server_the_ca_does_not_vouch_for_is_refused(
    tls_postgres: tuple[PrivatePostgres, Path], tmp_path: Path
) -> None:
    server, _ = tls_postgres
    ensure(tmp_path / "ca", tmp_path / "out", PkiPlan(brokers=(), postgres_hosts=()))
    stranger = tmp_path / "out" / "public" / "ca.crt"
    settings = verified(server, stranger)
    with pytest.raises(ssl.SSLCertVerificationError):
        await connect(settings.admin_dsn(), settings)


CONNECT_AS_ADMIN = """
import asyncio, os, sys
import asyncpg

async def main() -> None:
    connection = await asyncpg.connect(sys.argv[1])
    print(await connection.fetchval("SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()"))
    await connection.close()

asyncio.run(main())
"""


def test_the_admin_jobs_log_in_from_the_loaders_password_file(
    tls_postgres: tuple[PrivatePostgres, Path], tmp_path: Path
) -> None:
    """What the migrate job and the ops container do: the compose loader turns the admin
    password's secret file into PGPASSFILE, and asyncpg logs in with it over verified TLS."""
    server, cafile = tls_postgres
    (tmp_path / "postgres_password").write_text("postgres\n")
    url = f"postgresql://postgres@{HOST}:{server.port}/postgres"
    loader = ["/bin/sh", "-c", loader_script(), "ipmg-entrypoint"]
    result = subprocess.run(
        [
            *loader,
            sys.executable,
            "-c",
            CONNECT_AS_ADMIN,
            f"{url}?sslmode=verify-full&sslrootcert={cafile}",
        ],
        env={
            "PATH": "/usr/bin:/bin",
            "HOME": str(tmp_path),
            "TMPDIR": str(tmp_path),
            "PGPASSWORD_FILE": str(tmp_path / "postgres_password"),
        },
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "True"
