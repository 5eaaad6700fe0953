"""Schemathesis against each write service's published OpenAPI document, authenticated as the
secretariat: no input makes a 500, and every response matches the schema."""

from __future__ import annotations

from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis.core.result import Ok
from schemathesis.specs.openapi.checks import positive_data_acceptance

from ipmg_shared.settings import Settings
from tests.support.processes import ServiceProcess
from tests.support.tokens import secretariat

pytestmark = pytest.mark.infra
EXAMPLES_PER_OPERATION = 15
# Left out: "schema-valid data is accepted". A schema-valid body can still be refused with 422
# by a rule across fields (an amendment with neither title nor text) or a reused
# Idempotency-Key with another body, which no OpenAPI schema can express. Every other check
# runs: no 5xx, documented status codes, content types, headers, response schemas.


def fuzz(url: str, headers: dict[str, str]) -> int:
    """Every operation of the document at ``url``; returns how many were exercised."""
    schema = schemathesis.openapi.from_url(f"{url}/openapi.json")
    operations = []
    for result in schema.get_all_operations():
        assert isinstance(result, Ok), f"an operation of {url} does not load: {result}"
        operations.append(result.ok())
    for operation in operations:

        @given(case=operation.as_strategy())
        @settings(
            max_examples=EXAMPLES_PER_OPERATION,
            deadline=None,
            derandomize=True,
            suppress_health_check=list(HealthCheck),
            database=None,
        )
        def exercise(case: Any) -> None:
            case.call_and_validate(headers=headers, excluded_checks=[positive_data_acceptance])

        exercise()
    return len(operations)


@pytest.mark.parametrize("service", ["meetings", "resolutions"])
def test_write_api_never_fails_on_client_input(
    write_services: dict[str, ServiceProcess], migrated: Settings, service: str
) -> None:
    exercised = fuzz(write_services[service].url, secretariat(migrated))
    assert exercised >= 6
