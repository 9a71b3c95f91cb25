"""Scoped API keys: who may call what, checked once per request before any routing.

Keys are configured by the sha256 of the key, never the key itself, so a leaked configuration
or log does not leak a credential. A presented key is hashed and compared with every configured
hash with `hmac.compare_digest`, all of them every time, so the time taken says nothing about
which key (or how much of one) matched. Only the key's name is ever kept or logged.

Auth is on as soon as one API key is configured (`FASTINFER_API_KEYS` or
`FASTINFER_API_KEYS_FILE`). `FASTINFER_ADMIN_TOKEN` is then one more key, with the `admin` scope.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import json
import sys
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import TypeAdapter

from fastinfer.config import Settings
from fastinfer.config.api_keys import ADMIN, METRICS, PREDICT, ApiKeySpec, Scope_
from fastinfer.errors import ServiceError
from fastinfer.observability.logging import get_logger
from fastinfer.security.ratelimit import TokenBucket, retry_after, share

if TYPE_CHECKING:
    from fastinfer.context import RequestContext

log = get_logger("fastinfer.security")

ADMIN_TOKEN_KEY = "admin-token"  # noqa: S105 - the name (not the value) of the admin token key


class Access(StrEnum):
    """What a route needs, declared with the route (`api.routes.requires`)."""

    OPEN = "open"  # probes: orchestrators send no credentials
    PREDICT = "predict"  # models and everything not declared otherwise
    ADMIN = "admin"  # changes to the repository
    METRICS = "metrics"  # open unless FASTINFER_METRICS_AUTH
    DOCS = "docs"  # the interactive docs and their assets: open unless FASTINFER_DOCS_AUTH


_SPECS = TypeAdapter(list[ApiKeySpec])


def hash_key(key: str) -> str:
    """The hex sha256 a key is configured by."""
    return hashlib.sha256(key.encode()).hexdigest()


def key_entry(
    name: str,
    key: str,
    scopes: list[str],
    models: list[str] | None = None,
    *,
    rate: float | None = None,
    burst: float | None = None,
    daily_quota: int | None = None,
) -> str:
    """A `FASTINFER_API_KEYS` entry for `key`, as JSON (the key itself is not in it)."""
    entry: dict[str, Any] = {"name": name, "sha256": hash_key(key), "scopes": scopes}
    if models:
        entry["models"] = models
    if burst is not None and rate is None:
        raise ValueError("a burst needs a rate (requests a second)")
    limits = {"rate": rate, "burst": burst, "daily_quota": daily_quota}
    entry.update({field: value for field, value in limits.items() if value is not None})
    ApiKeySpec.model_validate(entry)  # a bad name, scope or limit fails here, not at serve time
    return json.dumps(entry)


def load_specs(settings: Settings) -> list[ApiKeySpec]:
    """The configured keys: `api_keys`, then the file's, then the admin token as a key."""
    specs = list(settings.api_keys)
    if settings.api_keys_file is not None:
        specs += _SPECS.validate_json(Path(settings.api_keys_file).read_bytes())
    if specs and settings.admin_token is not None:
        token = settings.admin_token.get_secret_value()
        specs.append(ApiKeySpec(name=ADMIN_TOKEN_KEY, sha256=hash_key(token), scopes=[ADMIN]))
    names = [spec.name for spec in specs]
    duplicates = sorted({name for name in names if names.count(name) > 1})
    if duplicates:
        raise ValueError(f"API key names must be unique; repeated: {', '.join(duplicates)}")
    return specs


class Unauthorized(ServiceError):  # noqa: N818
    status = 401
    code = "unauthorized"


class Forbidden(ServiceError):  # noqa: N818
    status = 403
    code = "forbidden"


class RateLimited(ServiceError):  # noqa: N818
    status = 429
    code = "rate_limited"


class QuotaExceeded(RateLimited):
    code = "quota_exceeded"


_DAY_S = 86_400.0


class _Key:
    __slots__ = (
        "bucket",
        "digest",
        "limit",
        "limit_text",
        "models",
        "name",
        "quota",
        "quota_bucket",
        "scopes",
    )

    def __init__(self, spec: ApiKeySpec, processes: int) -> None:
        self.name = spec.name
        self.digest = bytes.fromhex(spec.sha256)
        self.scopes = frozenset(spec.scopes)
        self.models = frozenset(spec.models) if spec.models is not None else None
        self.limit = spec.rate
        self.limit_text = f"{spec.rate:g}" if spec.rate is not None else ""
        self.bucket: TokenBucket | None = None
        if spec.rate is not None:
            self.bucket = TokenBucket(*share(spec.rate, spec.burst, processes))
        self.quota = spec.daily_quota
        self.quota_bucket: TokenBucket | None = None
        if spec.daily_quota is not None:
            quota = float(spec.daily_quota)
            self.quota_bucket = TokenBucket(*share(quota / _DAY_S, quota, processes))

    def rate_headers(self, bucket: TokenBucket) -> dict[str, str]:
        """X-RateLimit-* after a take: the configured rate, and what is left of this process's
        bucket (requests, and seconds until it is full)."""
        remaining, reset = bucket.left()
        return {
            "X-RateLimit-Limit": self.limit_text,
            "X-RateLimit-Remaining": str(remaining),
            "X-RateLimit-Reset": str(reset),
        }


def required_scope(access: Access, *, metrics_auth: bool, docs_auth: bool) -> Scope_ | None:
    """The key scope a route's access level needs (None: open to all)."""
    if access is Access.OPEN:
        return None
    if access is Access.METRICS:
        return METRICS if metrics_auth else None
    if access is Access.DOCS:
        return PREDICT if docs_auth else None
    return ADMIN if access is Access.ADMIN else PREDICT


class Guard:
    """Checks every request's key, scope, model and rate (one per server process)."""

    def __init__(
        self,
        specs: list[ApiKeySpec],
        *,
        processes: int = 1,
        metrics_auth: bool = False,
        docs_auth: bool = False,
    ) -> None:
        self._keys = [_Key(spec, processes) for spec in specs]
        self._metrics_auth = metrics_auth
        self._docs_auth = docs_auth

    @property
    def limits(self) -> dict[str, float]:
        """Each rate-limited key's name and this process's share of its rate."""
        return {k.name: k.bucket.rate for k in self._keys if k.bucket is not None}

    @property
    def limited(self) -> bool:
        """Whether any key has a rate limit or a daily quota (a 429 can happen)."""
        return any(k.bucket is not None or k.quota_bucket is not None for k in self._keys)

    def scope_for(self, access: Access) -> Scope_ | None:
        """The key scope a route of `access` needs here (None: no key needed)."""
        return required_scope(access, metrics_auth=self._metrics_auth, docs_auth=self._docs_auth)

    def models_of(self, name: str) -> frozenset[str] | None:
        """The models the key `name` may use; None: every model."""
        return next((key.models for key in self._keys if key.name == name), None)

    def check(
        self,
        context: RequestContext,
        headers: list[tuple[bytes, bytes]],
        access: Access,
        model: str | None,
    ) -> None:
        """Raise the 401, 403 or 429 this request gets; else note the key in `context`.

        `access` is what the matched route declares (PREDICT for a path no route serves: no
        probing of routes without a key); `model`, the model the route names."""
        if context.method == "OPTIONS":  # CORS preflights carry no credentials
            return
        needed = required_scope(access, metrics_auth=self._metrics_auth, docs_auth=self._docs_auth)
        if needed is None:
            return
        presented = _presented_key(headers)
        if presented is None:
            context.auth_failure = "missing"
            raise Unauthorized(
                "an API key is required: Authorization: Bearer <key> or X-API-Key: <key>",
                headers=_CHALLENGE,
            )
        key = self._match(presented)
        if key is None:
            context.auth_failure = "invalid"
            raise Unauthorized("the API key is not valid", headers=_CHALLENGE)
        context.api_key = key.name
        context.api_scopes = key.scopes
        if needed not in key.scopes and not (needed == METRICS and ADMIN in key.scopes):
            context.auth_failure = "scope"
            raise Forbidden(f"the API key {key.name!r} lacks the {needed!r} scope")
        if model is not None and key.models is not None and model not in key.models:
            context.auth_failure = "model"
            raise Forbidden(f"the API key {key.name!r} may not use the model {model!r}")
        if key.bucket is not None:
            wait = key.bucket.take()
            # Sent with every answer (clients pace themselves before they meet a 429).
            context.rate_headers = key.rate_headers(key.bucket)
            if wait:
                context.rate_limited = key.name
                raise RateLimited(
                    f"the API key {key.name!r} is over its rate limit of {key.limit_text} "
                    "requests/s",
                    headers={"Retry-After": str(retry_after(wait)), **context.rate_headers},
                )
        if key.quota_bucket is not None:
            wait = key.quota_bucket.take()
            if wait:
                context.rate_limited = key.name
                raise QuotaExceeded(
                    f"the API key {key.name!r} has used its quota of {key.quota} requests a day",
                    headers={"Retry-After": str(retry_after(wait))},
                )

    def _match(self, presented: bytes) -> _Key | None:
        digest = hashlib.sha256(presented).digest()
        found = None
        for key in self._keys:  # every key, no early exit: constant time in which one matched
            if hmac.compare_digest(digest, key.digest):
                found = key
        return found


_CHALLENGE = {"WWW-Authenticate": 'Bearer realm="fastinfer"'}


def _presented_key(headers: list[tuple[bytes, bytes]]) -> bytes | None:
    """The key of `X-API-Key`, else of `Authorization: Bearer`; None when neither is there."""
    bearer = None
    for name, value in headers:
        if name == b"x-api-key":
            return value.strip() or None
        if name == b"authorization":
            scheme, _, token = value.partition(b" ")
            if scheme.lower() == b"bearer" and token.strip():
                bearer = token.strip()
    return bearer


def build_guard(settings: Settings, processes: int = 1) -> Guard | None:
    """The guard of a server process; None when no API key is configured (auth off)."""
    specs = load_specs(settings)
    if not specs:
        return None
    return Guard(
        specs,
        processes=processes,
        metrics_auth=settings.metrics_auth,
        docs_auth=settings.docs_auth,
    )


def is_loopback(host: str) -> bool:
    """Whether listening on `host` is reachable from this machine only."""
    if host.strip("[]").lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False  # a hostname, or "" (every address): assume it is reachable


def warn_if_unprotected(settings: Settings) -> bool:
    """Warn, loudly, when the server listens beyond this machine with no API key (True then)."""
    if is_loopback(settings.host) or settings.api_keys or settings.api_keys_file is not None:
        return False
    log.warning(
        "auth_disabled_on_public_address",
        host=settings.host,
        hint="anyone who can reach this address can call every model; set FASTINFER_API_KEYS "
        "(see docs/auth.md), or listen on 127.0.0.1",
    )
    sys.stderr.write(
        f"WARNING: fastinfer listens on {settings.host} with authentication OFF: anyone who can "
        "reach it can call every model. Set FASTINFER_API_KEYS (docs/auth.md).\n"
    )
    sys.stderr.flush()
    return True
