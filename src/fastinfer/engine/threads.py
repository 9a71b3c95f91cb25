"""A thread-pool engine: each model gets its own small pool of inference threads.

The event loop only awaits; model code never runs on it, so probes and docs stay responsive
while a prediction is running. (Batching, bounded queues and worker processes build on this.)
"""

from __future__ import annotations

import asyncio
from concurrent.futures import ThreadPoolExecutor

from fastinfer.registry import ServedModel
from fastinfer.runtimes import Prediction, Row


class ThreadEngine:
    def __init__(self, threads_per_model: int = 1) -> None:
        self._threads = threads_per_model
        self._pools: dict[str, ThreadPoolExecutor] = {}

    def _pool(self, model: ServedModel) -> ThreadPoolExecutor:
        pool = self._pools.get(model.name)
        if pool is None:
            pool = ThreadPoolExecutor(self._threads, thread_name_prefix=f"infer-{model.name}")
            self._pools[model.name] = pool
        return pool

    async def infer(self, model: ServedModel, rows: list[Row]) -> list[Prediction]:
        runtime, schema = model.runtime, model.schema
        if runtime is None or schema is None:
            raise RuntimeError(f"model {model.name!r} is not loaded")
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._pool(model), runtime.predict, rows, schema.columns)

    def shutdown(self) -> None:
        for pool in self._pools.values():
            pool.shutdown(wait=True, cancel_futures=False)
        self._pools.clear()
