"""The admin API: load, unload and reload model versions and choose the default, while serving.

Off unless `FASTINFER_ADMIN_TOKEN` is set or an API key has the `admin` scope; every call needs
`Authorization: Bearer <token>` (or an admin API key: docs/auth.md).
A change returns once every server process applied it (or says which did not); a version
that fails to load changes nothing and the answer says why.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request
from pydantic import BaseModel, Field, PositiveInt, model_validator

from fastinfer.api.context import context_for
from fastinfer.api.errors import ErrorBody, error_content, error_example
from fastinfer.api.routes import ADMIN, requires
from fastinfer.errors import ServiceError
from fastinfer.repository.layout import scan_repository, version_key
from fastinfer.repository.manager import ChangeRefused, ChangeResult, ModelManager
from fastinfer.repository.registry import ModelRegistry
from fastinfer.security.admin_token import check_admin_token


class ChangeFailed(ServiceError):  # noqa: N818
    """A refused change, with the status and code the manager gave it."""

    def __init__(self, refused: ChangeRefused) -> None:
        super().__init__(refused.message, details=refused.details)
        self.status, self.code = refused.status, refused.code


def require_admin(request: Request) -> None:
    """A second lock: the transport checked the key or the admin token before reading the body
    (`check_admin_token`); this holds for any other way into these routes."""
    check_admin_token(
        request.app.state.settings,
        context_for(request.scope).api_scopes,
        request.headers.get("authorization", ""),
    )


_ERRORS: dict[int | str, dict[str, Any]] = {
    status: {"model": ErrorBody, "description": text, "content": error_content(example)}
    for status, (text, example) in {
        401: (
            "Missing or wrong admin token.",
            error_example(
                "unauthorized", "a valid admin token is required: Authorization: Bearer <token>"
            ),
        ),
        403: (
            "The admin API is off (no token configured).",
            error_example(
                "admin_disabled", "the admin API is off; set FASTINFER_ADMIN_TOKEN to turn it on"
            ),
        ),
        404: (
            "No such model or version.",
            error_example(
                "version_not_found", "model 'titanic' has no loaded version '3'", {"loaded": ["2"]}
            ),
        ),
        409: (
            "Another change is in progress, no repository is configured, the version "
            "to unload is the pinned default (version_pinned) or in the default's split "
            "(version_in_split), or a version to make the default is not ready "
            "(version_not_ready).",
            error_example("busy", "another model change is in progress; retry"),
        ),
        422: (
            "A version failed to load (sha256, file, self-test): nothing changed.",
            error_example(
                "load_failed",
                "nothing changed: titanic/3: the artefact's sha256 does not match model.yaml",
                {"failed": {"titanic/3": "the artefact's sha256 does not match model.yaml"}},
            ),
        ),
    }.items()
}


router = APIRouter(
    prefix="/admin",
    tags=["admin"],
    dependencies=[Depends(require_admin), requires(ADMIN)],
    responses=_ERRORS,
)


class ChangeAnswer(BaseModel):
    generation: int = Field(description="The desired-state generation now served.")
    changed: bool
    workers: dict[str, str] = Field(description="Each server process: applied, or its error.")
    models: dict[str, str | None] = Field(
        description="Each model's default version now (with a split, its heaviest version)."
    )
    splits: dict[str, dict[str, int]] = Field(
        default_factory=dict, description="The models whose default is split: version → weight."
    )


class DefaultVersion(BaseModel):
    """Exactly one of `version` (a pin; null: the newest version that is not staged) and
    `split` (versions by weight: `{"1": 90, "2": 10}` sends nine requests in ten to 1)."""

    version: str | None = Field(
        default=None, description="The version to pin; null: the newest that is not staged."
    )
    split: dict[str, PositiveInt] | None = Field(
        default=None,
        min_length=1,
        description="Split unversioned requests between loaded versions by weight.",
        examples=[{"1": 90, "2": 10}],
    )

    @model_validator(mode="after")
    def _one_of(self) -> DefaultVersion:
        given = self.model_fields_set & {"version", "split"}
        if len(given) != 1 or (self.split is None and "split" in given):
            raise ValueError('give either "version" (a version or null) or "split", not both')
        return self


class VersionState(BaseModel):
    version: str
    loaded: bool
    state: str | None
    reason: str | None
    default: bool
    role: str | None = Field(
        default=None,
        description="default, split (a share of the default's requests: `weight`), staged "
        "(loaded, not the default until promoted), or null.",
    )
    weight: int | None = Field(default=None, description="Its weight in the default's split.")
    revision: int | None
    sha256: str | None
    loaded_at: datetime | None
    in_flight: int
    last_failure: str | None
    unloaded_by: str | None = Field(
        default=None, description="Who unloaded it, if an operator did."
    )
    unloaded_at: datetime | None = Field(default=None, description="When an operator unloaded it.")


class ModelState(BaseModel):
    name: str
    default: str | None
    pinned: str | None
    split: dict[str, int] | None = None
    staged: list[str] = Field(default_factory=list)
    versions: list[VersionState]


class RepositoryState(BaseModel):
    generation: int
    repository: str | None
    models: list[ModelState]


def operator(request: Request) -> str:
    """Who asked for a change (`RequestContext.operator`)."""
    return context_for(request.scope).operator()


def _manager(request: Request) -> ModelManager:
    manager: ModelManager = request.app.state.manager
    return manager


async def _answer(request: Request, change: Any) -> ChangeAnswer:
    try:
        result: ChangeResult = await change
    except ChangeRefused as refused:
        raise ChangeFailed(refused) from None
    registry: ModelRegistry = request.app.state.registry
    return ChangeAnswer(
        **result.as_dict(), models=registry.default_versions(), splits=registry.splits()
    )


Admin = Annotated[ModelManager, Depends(_manager)]


@router.get("/models", response_model=RepositoryState, summary="Every model and version")
async def repository_state(request: Request, manager: Admin) -> RepositoryState:
    registry: ModelRegistry = request.app.state.registry
    on_disk = scan_repository(manager.repository) if manager.repository is not None else {}
    models = []
    for name in sorted(set(registry.names()) | set(on_disk) | set(registry.unloaded)):
        group = registry.get(name)
        loaded = group.versions if group is not None else {}
        held = registry.unloaded.get(name, {})
        default = group.default_version if group is not None else None
        states = []
        versions = set(loaded) | set(on_disk.get(name, {})) | set(held)
        for version in sorted(versions, key=version_key):
            model = loaded.get(version)
            record = held.get(version) if model is None else None
            states.append(
                VersionState(
                    version=version,
                    loaded=model is not None,
                    state=model.state.value if model else None,
                    reason=model.reason if model else None,
                    default=model is not None and version == default,
                    role=group.role(version) if group is not None and model else None,
                    weight=(group.split or {}).get(version) if group is not None else None,
                    revision=model.revision if model else None,
                    sha256=model.sha256 if model else None,
                    loaded_at=model.loaded_at if model else None,
                    in_flight=model.in_flight if model else 0,
                    last_failure=registry.failures.get((name, version)),
                    unloaded_by=record.by if record else None,
                    unloaded_at=record.at if record else None,
                )
            )
        models.append(
            ModelState(
                name=name,
                default=default,
                pinned=group.pinned if group else None,
                split=group.split if group else None,
                staged=list(group.staged) if group else [],
                versions=states,
            )
        )
    return RepositoryState(
        generation=manager.applied,
        repository=str(manager.repository) if manager.repository else None,
        models=models,
    )


@router.post(
    "/models/{name}/versions/{version}/load",
    response_model=ChangeAnswer,
    summary="Load a version from the repository (it becomes the default if it is the newest)",
)
async def load_version(
    name: str,
    version: str,
    request: Request,
    manager: Admin,
    stage: Annotated[
        bool | None,
        Query(
            description="Load it staged: reachable at its version path, not the default until "
            "promoted (default: FASTINFER_NEW_VERSIONS)."
        ),
    ] = None,
) -> ChangeAnswer:
    return await _answer(request, manager.load(name, version, stage=stage))


@router.post(
    "/models/{name}/versions/{version}/reload",
    response_model=ChangeAnswer,
    summary="Re-read a loaded version's files and swap it in without dropping requests",
)
async def reload_version(name: str, version: str, request: Request, manager: Admin) -> ChangeAnswer:
    return await _answer(request, manager.reload(name, version))


@router.post(
    "/models/{name}/versions/{version}/unload",
    response_model=ChangeAnswer,
    summary="Unload a version (requests already holding it finish first)",
)
async def unload_version(name: str, version: str, request: Request, manager: Admin) -> ChangeAnswer:
    return await _answer(request, manager.unload(name, version, by=operator(request)))


@router.post("/models/{name}/unload", response_model=ChangeAnswer, summary="Unload a model")
async def unload_model(name: str, request: Request, manager: Admin) -> ChangeAnswer:
    return await _answer(request, manager.unload(name, by=operator(request)))


@router.put(
    "/models/{name}/default",
    response_model=ChangeAnswer,
    summary="Set the default: pin a version (promote, roll back), split by weight (a canary), "
    "or null (follow the newest)",
)
async def set_default(
    name: str, body: DefaultVersion, request: Request, manager: Admin
) -> ChangeAnswer:
    return await _answer(request, manager.set_default(name, body.version, body.split))


@router.post(
    "/repository/sync",
    response_model=ChangeAnswer,
    summary="Load new repository versions and unload removed ones, now",
)
async def sync_repository(request: Request, manager: Admin) -> ChangeAnswer:
    return await _answer(request, manager.sync())
