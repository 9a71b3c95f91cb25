"""The admin routes' lock, shared by every transport (HTTP and gRPC's repository load/unload):
the key's `admin` scope when API keys are on, else the admin token alone."""

from __future__ import annotations

import hmac

from fastinfer.config import Settings
from fastinfer.errors import ServiceError
from fastinfer.security.keys import Unauthorized


class AdminDisabled(ServiceError):  # noqa: N818
    status = 403
    code = "admin_disabled"


def check_admin_token(
    settings: Settings, scopes: frozenset[str] | None, authorization: str
) -> None:
    """With API keys the guard already checked the key and its `admin` scope (`scopes`);
    without, the admin token alone guards the admin routes: 401/403 otherwise."""
    if scopes is not None:
        if "admin" not in scopes:  # the guard answers 403 first; this is a second lock
            raise Unauthorized("this API key lacks the admin scope")
        return
    if settings.admin_token is None:
        raise AdminDisabled("the admin API is off; set FASTINFER_ADMIN_TOKEN to turn it on")
    expected = settings.admin_token.get_secret_value().encode()
    scheme, _, token = authorization.partition(" ")
    if scheme.lower() != "bearer" or not hmac.compare_digest(token.strip().encode(), expected):
        raise Unauthorized(
            "a valid admin token is required: Authorization: Bearer <token>",
            headers={"WWW-Authenticate": 'Bearer realm="fastinfer-admin"'},
        )
