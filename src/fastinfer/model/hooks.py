"""Per-model async hooks around a prediction, given by import path in `model.yaml`.

    hooks:
      pre: ["mypkg.hooks:normalise"]      # async def normalise(rows, context) -> rows | None
      post: ["mypkg.hooks:audit"]         # async def audit(rows, predictions, context) -> None
      timeout_ms: 100

A pre-hook runs after validation and may return new rows (validated again) or reject the request
by raising `Reject` (a 422, or the status it carries). Anything else a pre-hook does wrong (an
exception, running past the timeout) is logged and counted, and the request goes on with the
rows it had: a broken hook never fails a request. Post-hooks run after the response has been
sent, so they add no latency; their failures are logged and counted too.
"""

from __future__ import annotations

import asyncio
import inspect
import pkgutil
import sys
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from fastinfer.observability.logging import get_logger

log = get_logger("fastinfer.hooks")

PreHook = Callable[[list[dict[str, Any]], "HookContext"], Awaitable[list[dict[str, Any]] | None]]
PostHook = Callable[[list[dict[str, Any]], list[dict[str, Any]], "HookContext"], Awaitable[None]]
_MAX_PENDING_POST = 1024  # post-hook tasks in flight per process; beyond it they are skipped


class Reject(Exception):  # noqa: N818 - raised by user code: a short name reads better there
    """Raised by a pre-hook to refuse a request; the client gets `status` and the message."""

    def __init__(self, message: str, *, status: int = 422) -> None:
        super().__init__(message)
        self.message = message
        self.status = status


class HookImportError(ValueError):
    """A hook's import path does not name an async function."""


@dataclass(frozen=True)
class HookContext:
    model: str
    version: str
    request_id: str


@dataclass
class HookCounters:
    """What the hooks of one model version did (shown in /health; metrics later)."""

    pre_failures: int = 0
    pre_timeouts: int = 0
    rejections: int = 0
    post_failures: int = 0
    post_skipped: int = 0


@dataclass
class Hooks:
    pre: list[tuple[str, PreHook]] = field(default_factory=list)
    post: list[tuple[str, PostHook]] = field(default_factory=list)
    timeout_s: float = 0.1
    counters: HookCounters = field(default_factory=HookCounters)

    def __bool__(self) -> bool:
        return bool(self.pre or self.post)

    async def before(
        self, rows: list[dict[str, Any]], context: HookContext
    ) -> list[dict[str, Any]] | None:
        """Rows the pre-hooks made (None: unchanged); raises Reject to refuse the request."""
        changed: list[dict[str, Any]] | None = None
        for path, hook in self.pre:
            try:
                result = await asyncio.wait_for(hook(changed or rows, context), self.timeout_s)
            except Reject:
                self.counters.rejections += 1
                raise
            except TimeoutError:
                self.counters.pre_timeouts += 1
                log.error("pre_hook_timeout", hook=path, request_id=context.request_id)
                continue
            except Exception as exc:
                self.counters.pre_failures += 1
                log.error("pre_hook_failed", hook=path, request_id=context.request_id, exc_info=exc)
                continue
            if result is not None:
                changed = result
        return changed

    def after(
        self,
        rows: list[dict[str, Any]],
        predictions: list[dict[str, Any]],
        context: HookContext,
    ) -> None:
        """Start the post-hooks in the background (call once the response is sent)."""
        if not self.post:
            return
        if len(_pending) >= _MAX_PENDING_POST:
            self.counters.post_skipped += 1
            return
        task = asyncio.get_running_loop().create_task(self._run_post(rows, predictions, context))
        _pending.add(task)
        task.add_done_callback(_pending.discard)

    async def _run_post(
        self,
        rows: list[dict[str, Any]],
        predictions: list[dict[str, Any]],
        context: HookContext,
    ) -> None:
        for path, hook in self.post:
            try:
                await asyncio.wait_for(hook(rows, predictions, context), self.timeout_s)
            except Exception as exc:
                self.counters.post_failures += 1
                log.error(
                    "post_hook_failed", hook=path, request_id=context.request_id, exc_info=exc
                )


_pending: set[asyncio.Task[None]] = set()


def load_hooks(pre: list[str], post: list[str], timeout_ms: float) -> Hooks:
    return Hooks(
        pre=[(path, _resolve(path)) for path in pre],
        post=[(path, _resolve(path)) for path in post],
        timeout_s=timeout_ms / 1000,
    )


def _resolve(path: str) -> Any:
    """The async function `path` names; each way the name can be wrong gets its own message."""
    module_name, sep, attribute = path.partition(":")
    names = [*module_name.split("."), *attribute.split(".")]
    if not sep or not all(name.isidentifier() for name in names):
        raise HookImportError(f"hook {path!r}: expected 'package.module:function'")
    try:
        hook = pkgutil.resolve_name(path)
    except ImportError as exc:
        raise HookImportError(f"hook {path!r}: cannot import {module_name!r}: {exc}") from None
    except AttributeError:
        if module_name not in sys.modules:
            raise  # the module's own code failed while it was imported
        raise HookImportError(f"hook {path!r}: {module_name!r} has no {attribute!r}") from None
    if not inspect.iscoroutinefunction(hook):
        raise HookImportError(f"hook {path!r}: must be an async function (async def)")
    return hook
