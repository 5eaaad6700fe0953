"""Signing in to the dashboard and out again.

A token is pasted into a form that POSTs it (a token in an address would land in proxy logs
and the browser's history). Both forms check that they were posted from the dashboard's own
origin, so another site cannot sign a browser in or out. The cookie is HttpOnly, SameSite=Strict,
Secure unless configured otherwise, and expires with its token.
"""

from __future__ import annotations

import math
import time
from urllib.parse import parse_qs

from fastapi import APIRouter, Depends, Request
from fastapi.responses import RedirectResponse, Response

from ipmg_reporting.auth import TOKEN_COOKIE
from ipmg_reporting.pages import render
from ipmg_shared.auth import AuthenticationFailed, token_verifier
from ipmg_shared.guards import public
from ipmg_shared.settings import Settings

router = APIRouter(include_in_schema=False)


def same_origin(request: Request) -> bool:
    """The form was posted from a page of this dashboard (scheme as the trusted proxy says).

    The pages' ``Referrer-Policy: no-referrer`` makes a browser send ``Origin: null``; then
    its ``Sec-Fetch-Site``, which no page's script can set, says where the form was.
    """
    origin = request.headers.get("origin")
    if origin in (None, "null"):
        return request.headers.get("sec-fetch-site") == "same-origin"
    return origin == f"{request.url.scheme}://{request.url.netloc}"


def _refused(status: int, message: str) -> Response:
    return render("login.html", status=status, message=message, ask_token=True)


# Open to everyone: the token posted is what is checked.
@router.post("/sign-in", dependencies=[Depends(public())])
async def sign_in(request: Request) -> Response:
    if not same_origin(request):
        return _refused(403, "sign in from the dashboard's own page")
    fields = parse_qs((await request.body()).decode("utf-8", "replace"))
    token = (fields.get("token") or [""])[0].strip()
    if not token:
        return _refused(400, "paste a token")
    try:
        verified = await token_verifier(request.app).verify(token)
    except AuthenticationFailed as error:
        return _refused(401, error.reason)
    settings: Settings = request.app.state.settings
    response = RedirectResponse("/", status_code=303)
    response.set_cookie(
        TOKEN_COOKIE,
        token,
        max_age=max(1, math.floor(verified.expires_at - time.time())),
        httponly=True,
        samesite="strict",
        secure=settings.dashboard_cookie_secure or request.url.scheme == "https",
        path="/",
    )
    return response


@router.post("/sign-out", dependencies=[Depends(public())])
async def sign_out(request: Request) -> Response:
    if not same_origin(request):
        return _refused(403, "sign out from the dashboard's own page")
    settings: Settings = request.app.state.settings
    response = RedirectResponse("/", status_code=303)
    response.delete_cookie(
        TOKEN_COOKIE,
        httponly=True,
        samesite="strict",
        secure=settings.dashboard_cookie_secure or request.url.scheme == "https",
        path="/",
    )
    return response
