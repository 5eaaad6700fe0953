"""Secrets outside development: each one a process needs is set, not the public development
default, and long enough; otherwise the process refuses to start, naming what is wrong."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping

from pydantic import SecretStr
from pydantic_settings import BaseSettings

from ipmg_shared.settings import Settings

MIN_SECRET_LENGTH = 32


class InsecureSecrets(ValueError):
    """One line naming every secret that is missing, a development default, or too short."""


def secret_problem(variable: str, value: SecretStr | None, default: str) -> str | None:
    text = value.get_secret_value() if value is not None else ""
    if not text:
        return f"{variable} is empty or not set"
    if text == default:
        return f"{variable} is the development default"
    if len(text) < MIN_SECRET_LENGTH:
        return f"{variable} is shorter than {MIN_SECRET_LENGTH} characters"
    return None


def field_problems(settings: BaseSettings, names: Iterable[str]) -> list[str]:
    """What is wrong with these SecretStr fields of ``settings``, compared to their defaults."""
    prefix = str(settings.model_config.get("env_prefix", ""))
    fields = type(settings).model_fields
    problems = []
    for name in names:
        default = fields[name].default
        default_text = default.get_secret_value() if isinstance(default, SecretStr) else ""
        problem = secret_problem(f"{prefix}{name}".upper(), getattr(settings, name), default_text)
        if problem is not None:
            problems.append(problem)
    return problems


def require(settings: Settings, problems: Iterable[str]) -> None:
    """Raise ``InsecureSecrets`` for these problems, unless this is a development process."""
    found = list(problems)
    if found and not settings.development:
        raise InsecureSecrets(
            "refusing to start outside development (IPMG_ENVIRONMENT=development): "
            + "; ".join(found)
        )


def service_secret_names(settings: Settings, service: str) -> list[str]:
    """The shared settings' secrets a running service uses: the token key, its own database
    password, and its Kafka password when the broker asks for one."""
    names = ["jwt_secret", f"{service}_db_password"]
    if settings.kafka_security_protocol != "PLAINTEXT":
        names.append("kafka_sasl_password")
    return names


def require_service_secrets(
    settings: Settings, service: str, extra_problems: Iterable[str] = ()
) -> None:
    names = service_secret_names(settings, service)
    require(settings, [*field_problems(settings, names), *extra_problems])


def require_database_passwords(settings: Settings, services: Iterable[str]) -> None:
    require(settings, field_problems(settings, [f"{name}_db_password" for name in services]))


def require_auditor_password(settings: Settings) -> None:
    require(settings, field_problems(settings, ["auditor_db_password"]))


def require_signing_key(settings: Settings) -> None:
    require(settings, field_problems(settings, ["jwt_secret"]))


def keyed_problems(
    variable: str,
    keys: Mapping[str, SecretStr],
    needed: Iterable[str],
    default_of: Callable[[str], str],
) -> list[str]:
    """Per-key problems of a mapping secret (one webhook key per unit)."""
    problems = []
    for name in needed:
        problem = secret_problem(f"{variable}[{name}]", keys.get(name), default_of(name))
        if problem is not None:
            problems.append(problem)
    return problems
