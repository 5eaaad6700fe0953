"""No default secrets outside development: a service refuses to start on a missing, default,
empty or short secret, with one line naming each; secrets are read from files."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import jwt
import pytest
from pydantic import SecretStr

from ipmg_notifications.directory import load_directory
from ipmg_notifications.settings import NotificationSettings, webhook_key_problems
from ipmg_shared.actors import Unit
from ipmg_shared.secrets import InsecureSecrets, require_auditor_password, require_service_secrets
from ipmg_shared.settings import SERVICES, Settings

REPO = Path(__file__).resolve().parents[3]
IPMG = REPO / ".venv" / "bin" / "ipmg"
STRONG = "s" * 40


def production(**values: SecretStr) -> Settings:
    return Settings(environment="production").model_copy(update=values)


def test_the_development_defaults_are_refused_outside_development() -> None:
    with pytest.raises(InsecureSecrets) as refused:
        require_service_secrets(production(), "meetings")
    message = str(refused.value)
    assert "\n" not in message
    assert "IPMG_JWT_SECRET is the development default" in message
    assert "IPMG_MEETINGS_DB_PASSWORD is the development default" in message
    assert "RESOLUTIONS" not in message  # only what this service uses
    require_service_secrets(Settings(environment="development"), "meetings")  # allowed there


@pytest.mark.parametrize(
    ("value", "problem"),
    [("", "is empty or not set"), ("short-but-not-default", "is shorter than 32 characters")],
)
def test_an_empty_or_short_secret_is_refused(value: str, problem: str) -> None:
    settings = production(jwt_secret=SecretStr(value), reporting_db_password=SecretStr(STRONG))
    with pytest.raises(InsecureSecrets, match=f"IPMG_JWT_SECRET {problem}"):
        require_service_secrets(settings, "reporting")
    require_service_secrets(
        production(jwt_secret=SecretStr(STRONG), reporting_db_password=SecretStr(STRONG)),
        "reporting",
    )


def test_a_kafka_password_is_required_when_the_broker_asks_for_one() -> None:
    strong = {"jwt_secret": SecretStr(STRONG), "meetings_db_password": SecretStr(STRONG)}
    require_service_secrets(production(**strong), "meetings")  # PLAINTEXT: no password
    sasl = production(**strong).model_copy(update={"kafka_security_protocol": "SASL_SSL"})
    with pytest.raises(InsecureSecrets, match="IPMG_KAFKA_SASL_PASSWORD is empty or not set"):
        require_service_secrets(sasl, "meetings")


def test_each_service_has_its_own_database_password() -> None:
    settings = Settings()
    passwords = {settings.service_db_password(name).get_secret_value() for name in SERVICES}
    assert len(passwords) == len(SERVICES)
    assert settings.service_dsn("meetings").startswith(
        "postgresql://ipmg_meetings:ipmg-local-only-meetings@"
    )


def test_secrets_are_read_from_files(tmp_path: Path) -> None:
    (tmp_path / "ipmg_jwt_secret").write_text(STRONG + "\n")
    (tmp_path / "ipmg_meetings_db_password").write_text("m" * 40)
    (tmp_path / "ipmg_notifications_webhook_keys").write_text(json.dumps({"punjab": "p" * 40}))
    settings = Settings(_secrets_dir=tmp_path)
    assert settings.jwt_secret.get_secret_value() == STRONG
    assert settings.service_db_password("meetings").get_secret_value() == "m" * 40
    require_service_secrets(settings.model_copy(update={"environment": "production"}), "meetings")
    notifications = NotificationSettings(_secrets_dir=tmp_path)
    assert notifications.webhook_key(Unit.PUNJAB) == b"p" * 40


def test_every_unit_receiving_webhooks_needs_its_own_key(tmp_path: Path) -> None:
    directory = load_directory()
    entries = json.loads(directory.model_dump_json())
    for entry in entries["units"]:
        if entry["unit"] in {"punjab", "sindh"}:
            entry["webhook_url"] = f"https://hooks.{entry['unit']}.example.org/ipmg"
    path = tmp_path / "directory.json"
    path.write_text(json.dumps(entries))
    hooked = load_directory(path)
    keys = {"punjab": "p" * 40}
    problems = webhook_key_problems(NotificationSettings(webhook_keys=keys), hooked)
    assert problems == ["IPMG_NOTIFICATIONS_WEBHOOK_KEYS[sindh] is empty or not set"]
    default = {"punjab": "p" * 40, "sindh": "ipmg-local-webhook-key-sindh-change-me"}
    problems = webhook_key_problems(NotificationSettings(webhook_keys=default), hooked)
    assert problems == ["IPMG_NOTIFICATIONS_WEBHOOK_KEYS[sindh] is the development default"]


def run_ipmg(*arguments: str, **env: str) -> subprocess.CompletedProcess[str]:
    environment = {key: value for key, value in os.environ.items() if not key.startswith("IPMG_")}
    return subprocess.run(
        [str(IPMG), *arguments],
        env={**environment, "IPMG_ENVIRONMENT": "production", **env},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


@pytest.mark.parametrize("service", SERVICES)
def test_every_service_refuses_to_start_on_a_default_secret(service: str) -> None:
    done = run_ipmg(service, "run", "--port", "1")
    assert done.returncode == 1
    (line,) = done.stderr.strip().splitlines()
    assert line.startswith("ipmg: error: refusing to start outside development")
    assert "IPMG_JWT_SECRET is the development default" in line
    assert f"IPMG_{service.upper()}_DB_PASSWORD is the development default" in line


def test_a_service_refuses_to_start_on_an_empty_secret_file(tmp_path: Path) -> None:
    (tmp_path / "ipmg_jwt_secret").write_text("")
    (tmp_path / "ipmg_reporting_db_password").write_text("r" * 40)
    done = run_ipmg("reporting", "run", "--port", "1", IPMG_SECRETS_DIR=str(tmp_path))
    assert done.returncode == 1
    assert done.stderr.strip() == (
        "ipmg: error: refusing to start outside development (IPMG_ENVIRONMENT=development):"
        " IPMG_JWT_SECRET is empty or not set"
    )


def test_migrate_and_token_issue_refuse_default_secrets_too() -> None:
    migrate = run_ipmg("migrate")
    assert migrate.returncode == 1
    assert "IPMG_NOTIFICATIONS_DB_PASSWORD is the development default" in migrate.stderr
    issue = run_ipmg("token", "issue", "--subject", "a@b", "--unit", "ncsw", "--role", "auditor")
    assert issue.returncode == 1
    assert "IPMG_JWT_SECRET is the development default" in issue.stderr
    assert issue.stdout == ""


def test_notifications_refuses_to_start_without_a_key_for_a_unit_with_a_webhook(
    tmp_path: Path,
) -> None:
    entries = json.loads(load_directory().model_dump_json())
    for entry in entries["units"]:
        if entry["unit"] == "sindh":
            entry["webhook_url"] = "https://hooks.sindh.example.org/ipmg"
    (tmp_path / "directory.json").write_text(json.dumps(entries))
    secrets = tmp_path / "secrets"
    secrets.mkdir()
    (secrets / "ipmg_jwt_secret").write_text(STRONG)
    (secrets / "ipmg_notifications_db_password").write_text(STRONG)
    done = run_ipmg(
        "notifications",
        "run",
        "--port",
        "1",
        IPMG_SECRETS_DIR=str(secrets),
        IPMG_NOTIFICATIONS_DIRECTORY_PATH=str(tmp_path / "directory.json"),
    )
    assert done.returncode == 1
    assert done.stderr.strip().endswith(
        "IPMG_NOTIFICATIONS_WEBHOOK_KEYS[sindh] is empty or not set"
    )


def test_token_issue_prints_only_the_token_on_stdout_and_keeps_to_the_cap() -> None:
    development = {"IPMG_ENVIRONMENT": "development"}
    base = ["token", "issue", "--subject", "a@ncsw.gov.pk", "--unit", "ncsw", "--role", "auditor"]
    issued = run_ipmg(*base, "--audience", "reporting", **development)
    assert issued.returncode == 0, issued.stderr
    claims = jwt.decode(issued.stdout.strip(), options={"verify_signature": False})
    assert claims["aud"] == ["ipmg-reporting"]
    assert issued.stderr.startswith(f"jti {claims['jti']} ")
    too_long = run_ipmg(*base, "--ttl-hours", "721", **development)
    assert too_long.returncode == 1
    assert "exceeds IPMG_TOKEN_MAX_LIFETIME_HOURS (720)" in too_long.stderr
    unknown = run_ipmg(*base, "--audience", "payroll", **development)
    assert unknown.returncode == 1
    assert "unknown audience(s): payroll" in unknown.stderr


def test_the_auditor_password_is_required_outside_development() -> None:
    default = "IPMG_AUDITOR_DB_PASSWORD is the development default"
    with pytest.raises(InsecureSecrets, match=default):
        require_auditor_password(production())
    require_auditor_password(production(auditor_db_password=SecretStr(STRONG)))
    require_auditor_password(Settings(environment="development"))
