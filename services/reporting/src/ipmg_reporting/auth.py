"""Who may read pages a browser opens: a bearer token, or the dashboard's cookie holding one.

The cookie is set by the sign-in form (``POST /sign-in``); it is HttpOnly, SameSite=Strict,
Secure, lives as long as its token, and only ever lets its holder read.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import APIKeyCookie, HTTPAuthorizationCredentials, HTTPBearer

from ipmg_shared.actors import Actor
from ipmg_shared.auth import AuthenticationFailed, token_verifier

TOKEN_COOKIE = "ipmg_token"  # noqa: S105 (a cookie name, not a secret)

bearer_scheme = HTTPBearer(auto_error=False)
cookie_scheme = APIKeyCookie(name=TOKEN_COOKIE, auto_error=False)


def browser_token(
    credentials: HTTPAuthorizationCredentials | None, cookie: str | None
) -> str | None:
    if credentials is not None:
        return credentials.credentials
    return cookie or None


async def browser_actor(
    request: Request,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer_scheme)],
    cookie: Annotated[str | None, Depends(cookie_scheme)],
) -> Actor:
    token = browser_token(credentials, cookie)
    if token is None:
        raise AuthenticationFailed("a bearer token (or the dashboard's cookie) is required")
    return await token_verifier(request.app).actor(token)


async def optional_browser_actor(
    request: Request,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer_scheme)],
    cookie: Annotated[str | None, Depends(cookie_scheme)],
) -> Actor | None:
    """The actor of a valid token, or None for a page that then asks for one itself."""
    try:
        return await browser_actor(request, credentials, cookie)
    except AuthenticationFailed:
        return None


BrowserActor = Annotated[Actor, Depends(browser_actor)]
