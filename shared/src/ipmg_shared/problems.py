"""RFC 9457 problem details for every error an HTTP client can cause, and never a 500 for them."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import asyncpg
from fastapi import FastAPI, Request
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import ValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from ipmg_shared.auth import AuthenticationFailed, Forbidden
from ipmg_shared.canonical import NotCanonical
from ipmg_shared.db import UNAVAILABLE_ERRORS
from ipmg_shared.domain import CommandRefused
from ipmg_shared.logging import get_logger
from ipmg_shared.store import IdempotencyKeyReused, WrongExpectedVersion

PROBLEM_JSON = "application/problem+json"
RETRY_AFTER_S = 2

log = get_logger("ipmg.http")


def problem(
    status: int, title: str, detail: str, *, headers: dict[str, str] | None = None, **extra: Any
) -> JSONResponse:
    body = {"type": "about:blank", "title": title, "status": status, "detail": detail, **extra}
    return JSONResponse(
        jsonable_encoder(body), status_code=status, media_type=PROBLEM_JSON, headers=headers
    )


def install_problem_handlers(app: FastAPI) -> None:
    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, error: RequestValidationError) -> JSONResponse:
        errors = [
            {"field": ".".join(str(part) for part in item["loc"]), "message": item["msg"]}
            for item in error.errors()
        ]
        malformed = any(item.get("type") == "json_invalid" for item in error.errors())
        if malformed:
            return problem(400, "Malformed request", "the body is not valid JSON", errors=errors)
        first = errors[0] if errors else {"field": "request", "message": "invalid"}
        return problem(
            422,
            "Invalid request",
            f"{first['field']}: {first['message']}",
            errors=errors,
            **_named_rule(error.errors()),
        )

    @app.exception_handler(ValidationError)
    async def _invalid_command(request: Request, error: ValidationError) -> JSONResponse:
        # A body that is well-formed field by field but breaks a rule across fields.
        errors = [
            {"field": ".".join(str(part) for part in item["loc"]) or "body", "message": item["msg"]}
            for item in error.errors(include_url=False)
        ]
        return problem(
            422,
            "Invalid request",
            f"{errors[0]['field']}: {errors[0]['message']}",
            errors=errors,
            **_named_rule(error.errors(include_url=False)),
        )

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, error: StarletteHTTPException) -> JSONResponse:
        return problem(
            error.status_code,
            str(error.detail),
            str(error.detail),
            headers=None if error.headers is None else dict(error.headers),
        )

    @app.exception_handler(AuthenticationFailed)
    async def _unauthenticated(request: Request, error: AuthenticationFailed) -> JSONResponse:
        return problem(401, "Unauthenticated", error.reason, headers={"WWW-Authenticate": "Bearer"})

    @app.exception_handler(Forbidden)
    async def _forbidden(request: Request, error: Forbidden) -> JSONResponse:
        if error.rule is None:
            return problem(403, "Forbidden", error.reason)
        return problem(403, "Forbidden", error.reason, rule=error.rule)

    @app.exception_handler(CommandRefused)
    async def _refused(request: Request, error: CommandRefused) -> JSONResponse:
        titles = {403: "Forbidden", 404: "Not found", 409: "Conflict", 422: "Invalid request"}
        return problem(
            error.status, titles.get(error.status, "Refused"), error.reason, rule=error.rule
        )

    @app.exception_handler(WrongExpectedVersion)
    async def _stale(request: Request, error: WrongExpectedVersion) -> JSONResponse:
        return problem(
            409,
            "Version conflict",
            str(error),
            rule="stream.expected_version",
            current_version=error.actual,
        )

    @app.exception_handler(IdempotencyKeyReused)
    async def _reused(request: Request, error: IdempotencyKeyReused) -> JSONResponse:
        return problem(422, "Idempotency key reused", str(error))

    @app.exception_handler(NotCanonical)
    async def _not_canonical(request: Request, error: NotCanonical) -> JSONResponse:
        return problem(422, "Invalid request", str(error))

    @app.exception_handler(asyncpg.UntranslatableCharacterError)
    async def _untranslatable(request: Request, error: Exception) -> JSONResponse:
        return problem(422, "Invalid request", "the text holds a character that cannot be stored")

    @app.exception_handler(asyncpg.CharacterNotInRepertoireError)
    async def _repertoire(request: Request, error: Exception) -> JSONResponse:
        return problem(422, "Invalid request", "the text holds a character that cannot be stored")

    for error_class in UNAVAILABLE_ERRORS:
        app.add_exception_handler(error_class, _unavailable)

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, error: Exception) -> JSONResponse:
        log.exception("unhandled_error", path=request.url.path)
        return problem(500, "Internal error", "the request failed; it was logged")


def _named_rule(errors: Sequence[Any]) -> dict[str, Any]:
    """``rule``: the first error's rule id, when a project rule (``date.in_future``...) broke."""
    for item in errors:
        if "." in str(item.get("type", "")):
            return {"rule": str(item["type"])}
    return {}


async def _unavailable(request: Request, error: Exception) -> JSONResponse:
    log.warning("dependency_unavailable", path=request.url.path, error=repr(error))
    return problem(
        503,
        "Service unavailable",
        "a dependency (database or broker) is unavailable; nothing was applied, retry later",
        headers={"Retry-After": str(RETRY_AFTER_S)},
    )


class BodySizeLimit:
    """413 for bodies over the limit, checked on the declared length and on what arrives."""

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope.get("headers", [])).get(b"content-length")
        if declared is not None and (not declared.isdigit() or int(declared) > self.max_bytes):
            await self._too_large(scope, receive, send)
            return
        received = 0

        async def limited_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    raise _TooLarge
            return message

        try:
            await self.app(scope, limited_receive, send)
        except _TooLarge:
            await self._too_large(scope, receive, send)

    async def _too_large(self, scope: Scope, receive: Receive, send: Send) -> None:
        response = problem(
            413, "Request too large", f"the body is larger than {self.max_bytes} bytes"
        )
        await response(scope, receive, send)


class _TooLarge(Exception):
    pass
