"""One table of the service's routes, read by the hot path, by authorisation and by tracing.

Each route declares beside itself what a caller needs (`dependencies=[requires(ADMIN)]`, on the
route or its router; PREDICT when it says nothing), as Starlette's `requires` does. The table is
compiled from the FastAPI app once its routes are installed, so the hot path's dispatch, the
guard's scope check and the span names cannot drift from the routes that exist. Matching is a
dict lookup plus a comparison of a few path segments (~1 µs): no regular expressions per request.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from fastapi import Depends, FastAPI
from fastapi.routing import APIRoute, iter_route_contexts
from starlette.routing import BaseRoute, Mount

from fastinfer.security.keys import Access

OPEN, PREDICT, ADMIN, METRICS, DOCS = (
    Access.OPEN,
    Access.PREDICT,
    Access.ADMIN,
    Access.METRICS,
    Access.DOCS,
)


class Requires:
    """The access a route needs, as a FastAPI dependency: it does nothing when called (the
    guard checked the key before routing); the table reads it."""

    def __init__(self, access: Access) -> None:
        self.access = access

    async def __call__(self) -> None:
        return None


def requires(access: Access) -> Any:
    """`dependencies=[requires(ADMIN)]` on a route or router: what a caller needs."""
    return Depends(Requires(access))


@dataclass(frozen=True, slots=True)
class Route:
    method: str
    template: str  # as declared: /v1/models/{name}/predict
    access: Access
    segments: tuple[str | None, ...]  # literal segments; None where a parameter goes
    names: tuple[str, ...]  # the parameters' names, in order
    prefix: bool = False  # a mount: matches every path below it


@dataclass(slots=True)
class Match:
    route: Route
    params: dict[str, str]

    @property
    def model(self) -> str | None:
        return self.params.get("name")


class RouteTable:
    def __init__(self, routes: Iterable[Route]) -> None:
        self._static: dict[tuple[str, str], Route] = {}
        self._dynamic: dict[tuple[str, int, str], list[Route]] = {}
        self._mounts: list[Route] = []
        self.routes = list(routes)
        for route in self.routes:
            if route.prefix:
                self._mounts.append(route)
            elif not route.names:
                self._static[(route.method, route.template)] = route
            else:
                key = (route.method, len(route.segments), route.segments[1] or "")
                self._dynamic.setdefault(key, []).append(route)

    @classmethod
    def of_app(cls, app: FastAPI) -> RouteTable:
        return cls(_compile(app.routes))

    def match(self, method: str, path: str) -> Match | None:
        """The route serving `method path`, with its parameters; None: no route (404/405)."""
        route = self._static.get((method, path))
        if route is not None:
            return Match(route, {})
        parts = path.split("/")
        if len(parts) > 2:
            for route in self._dynamic.get((method, len(parts), parts[1]), ()):
                params = _params(route, parts)
                if params is not None:
                    return Match(route, params)
        for route in self._mounts:
            if path.startswith(route.template + "/"):
                return Match(route, {})
        return None


def _params(route: Route, parts: list[str]) -> dict[str, str] | None:
    params: dict[str, str] = {}
    names = iter(route.names)
    for literal, part in zip(route.segments, parts, strict=True):
        if literal is None:
            if not part:
                return None  # an empty name or version is no name at all
            params[next(names)] = part
        elif literal != part:
            return None
    return params


def _compile(routes: list[BaseRoute]) -> list[Route]:
    """The app's routes, as FastAPI resolves them (routers included, prefixes applied)."""
    compiled: list[Route] = []
    for route in iter_route_contexts(routes):
        original = route.original_route
        if isinstance(original, Mount):  # static files: the docs' assets
            compiled.append(Route("GET", original.path, DOCS, (), (), prefix=True))
            continue
        template, methods = route.path_format, route.methods
        if template is None or not methods:
            continue
        if isinstance(original, APIRoute):
            access = _declared(route.dependencies) or PREDICT
        else:  # FastAPI's own plain routes are its documents (/openapi.json)
            access = DOCS
        segments = tuple(None if s.startswith("{") else s for s in template.split("/"))
        names = tuple(s.strip("{}").split(":")[0] for s in template.split("/") if "{" in s)
        for method in sorted(methods):
            compiled.append(Route(method, template, access, segments, names))
    return compiled


def _declared(dependencies: list[Any]) -> Access | None:
    """The route's own declaration wins over its router's (FastAPI lists the router's first)."""
    for dependency in reversed(dependencies):
        if isinstance(dependency.dependency, Requires):
            access: Access = dependency.dependency.access
            return access
    return None
