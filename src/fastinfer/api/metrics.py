"""`GET /metrics`: Prometheus exposition, summed over every server process."""

from __future__ import annotations

import asyncio

from fastapi import APIRouter, Request
from starlette.responses import Response

from fastinfer.api.routes import METRICS, requires
from fastinfer.observability.metrics import Metrics
from fastinfer.observability.metrics_multiprocess import CONTENT_TYPE

router = APIRouter(tags=["probes"], dependencies=[requires(METRICS)])


@router.get("/metrics", summary="Prometheus metrics (all worker processes)")
async def metrics(request: Request) -> Response:
    collected: Metrics = request.app.state.metrics
    collected.flush()  # this process's latest counts (on the loop, where they are gathered)
    # Reading every worker's files is blocking I/O: keep it off the event loop.
    body = await asyncio.to_thread(collected.exposition)
    return Response(body, media_type=CONTENT_TYPE)
