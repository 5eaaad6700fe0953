"""Against the real PostgreSQL: a revoked token is refused by every service, within the
refresh interval; each service's role has its own password and only reads its revocations."""

from __future__ import annotations

import asyncio
from uuid import uuid4

import asyncpg
import pytest

from ipmg_shared.actors import Role, Unit
from ipmg_shared.auth import AuthenticationFailed, TokenVerifier, mint_token
from ipmg_shared.cli import service_definitions
from ipmg_shared.db import create_pool
from ipmg_shared.revocation import RevocationList
from ipmg_shared.settings import SERVICES, Settings
from ipmg_shared.token_cli import revoke_everywhere
from tests.support.processes import IPMG, service_env

pytestmark = pytest.mark.infra


@pytest.fixture(scope="module")
async def migrated(postgres: Settings) -> Settings:
    settings = postgres.model_copy(
        update={
            "database_prefix": f"{postgres.database_prefix}tok{uuid4().hex[:6]}_",
            "token_revocation_refresh_s": 0.2,
        }
    )
    for definition in service_definitions().values():
        await definition.migrate(settings)
    return settings


async def test_a_revoked_token_is_refused_by_every_service(migrated: Settings) -> None:
    kept = mint_token(migrated, subject="a@ncsw.gov.pk", unit=Unit.NCSW, role=Role.AUDITOR)
    revoked = mint_token(migrated, subject="b@ncsw.gov.pk", unit=Unit.NCSW, role=Role.AUDITOR)
    pools = [await create_pool(migrated.service_dsn(name), migrated) for name in SERVICES]
    try:
        verifiers = [
            TokenVerifier(migrated, name, RevocationList(pool, migrated))
            for name, pool in zip(SERVICES, pools, strict=True)
        ]
        for verifier in verifiers:
            assert (await verifier.actor(revoked.token)).subject == "b@ncsw.gov.pk"

        done = await revoke_everywhere(migrated, SERVICES, revoked.jti, "laptop lost")
        assert done == list(SERVICES)
        await asyncio.sleep(migrated.token_revocation_refresh_s * 2)

        for verifier in verifiers:
            with pytest.raises(AuthenticationFailed, match="revoked"):
                await verifier.actor(revoked.token)
            assert (await verifier.actor(kept.token)).subject == "a@ncsw.gov.pk"
        # Revoking again changes nothing and fails nothing.
        assert await revoke_everywhere(migrated, SERVICES, revoked.jti, "") == list(SERVICES)
    finally:
        for pool in pools:
            await pool.close()


async def test_a_service_role_cannot_unrevoke_nor_log_in_as_another(migrated: Settings) -> None:
    own = await asyncpg.connect(migrated.service_dsn("reporting"))
    try:
        for statement in (
            "DELETE FROM revoked_tokens",
            "INSERT INTO revoked_tokens (jti, expires_at) VALUES ('x', now())",
            "UPDATE revoked_tokens SET expires_at = now()",
        ):
            with pytest.raises(asyncpg.InsufficientPrivilegeError):
                await own.execute(statement)
        assert await own.fetchval("SELECT count(*) FROM revoked_tokens") >= 0
    finally:
        await own.close()
    # Reporting's password opens no other service's role.
    impostor = migrated.model_copy(update={"meetings_db_password": migrated.reporting_db_password})
    with pytest.raises(asyncpg.InvalidPasswordError):
        await asyncpg.connect(impostor.service_dsn("meetings"))


async def run_ipmg(settings: Settings, *arguments: str) -> tuple[int, str, str]:
    process = await asyncio.create_subprocess_exec(
        str(IPMG),
        *arguments,
        env=service_env(settings),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(process.communicate(), 120)
    assert process.returncode is not None
    return process.returncode, out.decode(), err.decode()


async def test_ipmg_token_revoke_writes_the_id_into_every_services_database(
    migrated: Settings,
) -> None:
    jti = str(uuid4())
    code, out, err = await run_ipmg(migrated, "token", "revoke", jti, "--reason", "device stolen")
    assert code == 0, err
    assert f"token {jti} revoked in: meetings, notifications, reporting, resolutions" in (
        " ".join(out.split())
    )
    for service in SERVICES:
        admin = await asyncpg.connect(migrated.admin_dsn(migrated.service_database(service)))
        try:
            reason = await admin.fetchval(
                "SELECT reason FROM revoked_tokens WHERE jti = $1 AND expires_at > now()", jti
            )
        finally:
            await admin.close()
        assert reason == "device stolen", service
    code, _, err = await run_ipmg(migrated, "token", "revoke", " ")
    assert code == 1
    assert err.strip() == "ipmg: error: a token id (jti) of 1 to 200 characters is required"
