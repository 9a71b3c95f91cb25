"""Where predictions run: per-model bounded queues, pull-when-free batching, worker threads.

The event loop only admits, queues and awaits; model code runs on inference workers.
"""

from fastinfer.engine.engine import Engine
from fastinfer.engine.errors import DeadlineExceededError, OverloadedError, failed_row
from fastinfer.engine.work import WorkItem

__all__ = ["DeadlineExceededError", "Engine", "OverloadedError", "WorkItem", "failed_row"]
