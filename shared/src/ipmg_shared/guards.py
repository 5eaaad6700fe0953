"""The authorization policy on HTTP routes: FastAPI dependencies that check it.

Every route of every service names its permission through one of these dependencies, so the
policy's coverage can be read off the application (``permission_of``).
"""

# No `from __future__ import annotations`: FastAPI reads the generated dependencies'
# annotations at definition time, and they name a dependency chosen at run time.

from collections.abc import Callable
from typing import Annotated, Any

from fastapi import Depends
from fastapi.dependencies.models import Dependant

from ipmg_shared.actors import Actor, Unit
from ipmg_shared.auth import Forbidden, current_actor
from ipmg_shared.policy import Action, Permission, Resource, refusal

OPERATIONS = Permission(Resource.OPERATIONS, Action.READ)


def require(actor: Actor, permission: Permission, unit: Unit | None = None) -> None:
    """Raise Forbidden (403) unless the policy lets ``actor`` do ``permission`` for ``unit``."""
    refused = refusal(actor, permission, unit)
    if refused is not None:
        raise Forbidden(refused.reason, refused.rule)


def permitted(
    permission: Permission, authenticate: Callable[..., Any] = current_actor
) -> Callable[..., Any]:
    """A dependency giving the authenticated actor, once the policy allows ``permission``.

    ``authenticate`` may answer None (a page that asks for a token itself): then nothing is
    checked and None is given.
    """

    async def dependency(actor: Annotated[Actor | None, Depends(authenticate)]) -> Actor | None:
        if actor is not None:
            require(actor, permission)
        return actor

    dependency.permission = permission  # type: ignore[attr-defined]
    return dependency


def public(permission: Permission = OPERATIONS) -> Callable[..., Any]:
    """A dependency that marks a route as open to everyone, as the policy says."""

    async def dependency() -> None:
        return None

    dependency.permission = permission  # type: ignore[attr-defined]
    return dependency


def permission_of(dependant: Dependant) -> Permission | None:
    """The permission a route's dependencies (its ``dependant``) check, if any."""
    found = getattr(dependant.call, "permission", None)
    if isinstance(found, Permission):
        return found
    for child in dependant.dependencies:
        nested = permission_of(child)
        if nested is not None:
            return nested
    return None
