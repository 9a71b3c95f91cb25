"""OpenAPI with one typed predict operation per model.

Models load after the app is built (and may change later), so the document is generated on
demand and cached only once every model has settled.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi

from fastinfer.api.errors import (
    ERROR_DESCRIPTIONS,
    ERROR_EXAMPLES,
    REQUEST_INVALID_EXAMPLE,
    error_content,
)
from fastinfer.api.routes import PREDICT, RouteTable
from fastinfer.model.schema import RowSchema, pascal_case
from fastinfer.repository.registry import ModelRegistry
from fastinfer.repository.served import ModelState, ServedModel

if TYPE_CHECKING:
    from fastinfer.security.keys import Guard

_REF = "#/components/schemas/{model}"


def install_openapi(app: FastAPI, registry: ModelRegistry) -> None:
    built_at = -1  # the registry's change count the cached document reflects

    def openapi() -> dict[str, Any]:
        nonlocal built_at
        if app.openapi_schema is not None and built_at == registry.changes:
            return app.openapi_schema
        document = build_openapi(app, registry)
        if all(m.state is not ModelState.LOADING for m in registry):
            app.openapi_schema, built_at = document, registry.changes
        return document

    app.openapi = openapi  # type: ignore[method-assign]


def build_openapi(app: FastAPI, registry: ModelRegistry) -> dict[str, Any]:
    document = get_openapi(
        title=app.title,
        version=app.version,
        description=app.description,
        routes=app.routes,
        tags=[{"name": m.name, "description": m.config.description or ""} for m in registry],
    )
    schemas: dict[str, Any] = document.setdefault("components", {}).setdefault("schemas", {})
    paths = document["paths"]
    for name in registry.names():
        group = registry.get(name)
        default = group.default() if group is not None else None
        if group is None or default is None or default.schema is None:
            continue
        schemas.update(default.schema.json_schemas(_REF))
        response_name = f"{pascal_case(name)}PredictResponse"
        schemas[response_name] = _response_schema(default, response_name)
        paths[f"/v1/models/{name}/predict"] = {
            "post": _predict_operation(default, default.schema, response_name, None)
        }
        for model in group.ordered():
            if model.schema is None or not model.serving:
                continue
            schema, model_response = default.schema, response_name
            if model is not default:  # its own names: versions may differ in their inputs
                schema = model.schema.renamed(f"{name} v{model.version}")
                schemas.update(schema.json_schemas(_REF))
                model_response = f"{pascal_case(f'{name} v{model.version}')}PredictResponse"
                schemas[model_response] = _response_schema(model, model_response)
            paths[f"/v1/models/{name}/versions/{model.version}/predict"] = {
                "post": _predict_operation(model, schema, model_response, model.version)
            }
    _document_v2_errors(paths, schemas)
    _document_malformed_bodies(paths)
    _document_key_errors(app, paths)
    _document_error_examples(paths)
    return document


# The statuses the v2 model routes answer besides 200 and FastAPI's 422, all `{"error": ...}`:
# what each means, and an example of its text.
_V2_MODEL_ERRORS = {
    404: ("No such model or version.", "no model named 'iris'"),
    503: ("The model version is not ready.", "model 'titanic' is not ready: loading"),
}
_V2_INFER_ERRORS = {
    400: (
        "The body is not a valid v2 inference request.",
        "required input(s) missing: 'age'",
    ),
    413: (
        "Too many rows, or too large a body.",
        "the request has 5000 rows; at most 1024 are accepted in one request",
    ),
    500: ("The model failed on this input.", "model 'titanic' failed on this input"),
    503: (
        "The model version is not ready, or shed the request (see Retry-After).",
        "model 'titanic' has 1000 requests queued (the limit)",
    ),
    504: (
        "The request's deadline passed.",
        "the deadline passed while the request was queued; it was not computed",
    ),
}


def _document_v2_errors(paths: dict[str, Any], schemas: dict[str, Any]) -> None:
    schemas["V2Error"] = {
        "title": "V2Error",
        "type": "object",
        "properties": {"error": {"type": "string"}},
        "required": ["error"],
    }
    schema = {"$ref": _REF.format(model="V2Error")}
    for path, operations in paths.items():
        if not path.startswith("/v2/models/"):
            continue
        errors = {**_V2_MODEL_ERRORS, **(_V2_INFER_ERRORS if path.endswith("/infer") else {})}
        for operation in operations.values():
            responses = operation.setdefault("responses", {})
            for status, (text, example) in errors.items():
                content = {"application/json": {"schema": schema, "example": {"error": example}}}
                responses.setdefault(str(status), {"description": text, "content": content})


def _document_malformed_bodies(paths: dict[str, Any]) -> None:
    """Every operation that reads a JSON body answers 400 when it does not parse."""
    for path, operations in paths.items():
        model = "V2Error" if path.startswith("/v2/") else "ErrorBody"
        for operation in operations.values():
            if "requestBody" in operation:
                content = {"application/json": {"schema": {"$ref": _REF.format(model=model)}}}
                operation.setdefault("responses", {}).setdefault(
                    "400", {"description": "The body is not valid JSON.", "content": content}
                )


_KEY_ERRORS = {
    401: "No API key, or not a valid one (see WWW-Authenticate).",
    403: "The API key lacks the scope this route needs, or may not use this model.",
    429: "The API key is over its rate limit or daily quota (see Retry-After, X-RateLimit-*).",
}


def _document_key_errors(app: FastAPI, paths: dict[str, Any]) -> None:
    """With API keys configured, every operation that needs one may answer 401 and 403, and
    429 when some key is rate limited."""
    service = getattr(app.state, "service", None)
    guard: Guard | None = getattr(service, "guard", None)
    if service is None or guard is None:
        return
    table: RouteTable = service.routes
    for path, operations in paths.items():
        model = "V2Error" if path.startswith("/v2/") else "ErrorBody"
        for method, operation in operations.items():
            match = table.match(method.upper(), path)
            if guard.scope_for(match.route.access if match is not None else PREDICT) is None:
                continue
            responses = operation.setdefault("responses", {})
            for status, text in _KEY_ERRORS.items():
                if status == 429 and not guard.limited:
                    continue
                content = {"application/json": {"schema": {"$ref": _REF.format(model=model)}}}
                responses.setdefault(str(status), {"description": text, "content": content})


def _document_error_examples(paths: dict[str, Any]) -> None:
    """Give every error response an example with its own status's code, where its route gave
    none: a v1 body shows the `code` that comes with the status, a v2 body its `error` text.

    FastAPI documents its 422 as its own `HTTPValidationError`; the service answers those in
    the error shape of the path's protocol, so that is what is documented instead."""
    for path, operations in paths.items():
        v2 = path.startswith("/v2/")
        for operation in operations.values():
            for status, response in operation.get("responses", {}).items():
                if not status.isdigit() or int(status) < 400:
                    continue
                media = response.setdefault("content", {}).setdefault("application/json", {})
                ref = media.get("schema", {}).get("$ref", "")
                if ref.endswith("/HTTPValidationError"):
                    media["schema"] = {"$ref": _REF.format(model="V2Error" if v2 else "ErrorBody")}
                    invalid = REQUEST_INVALID_EXAMPLE
                    media["example"] = {"error": invalid["message"]} if v2 else invalid
                    continue
                example = ERROR_EXAMPLES.get(int(status))
                if "example" in media or "examples" in media or example is None:
                    continue
                if ref.endswith("/V2Error"):
                    media["example"] = {"error": example["message"]}
                elif ref.endswith("/ErrorBody"):
                    media["example"] = example


def _predict_operation(
    model: ServedModel, schema: RowSchema, response_name: str, version: str | None
) -> dict[str, Any]:
    content: dict[str, Any] = {"schema": {"$ref": _REF.format(model=schema.request_name)}}
    if model.config.example is not None:
        content["example"] = {"inputs": [model.config.example]}
    error = {"application/json": {"schema": {"$ref": _REF.format(model="ErrorBody")}}}
    responses: dict[str, Any] = {
        "200": {
            "description": "One prediction per input row, in order.",
            "content": {"application/json": {"schema": {"$ref": _REF.format(model=response_name)}}},
        }
    }
    responses.update(
        {
            str(status): {
                "description": text,
                "content": {
                    "application/json": {
                        **error["application/json"],
                        **error_content(ERROR_EXAMPLES[status])["application/json"],
                    }
                },
            }
            for status, text in ERROR_DESCRIPTIONS.items()
        }
    )
    which = "the default version" if version is None else f"version {version}"
    operation_id = f"predict_{model.name}" + (f"_v{version}" if version is not None else "")
    return {
        "tags": [model.name],
        "summary": f"Predict with {model.name} ({which})",
        "description": (model.config.description or "")
        + f"\n\nSend up to {schema.max_rows} rows in `inputs`. The answer's `version` and "
        "the `X-Model-Version` header say which version computed it.",
        "operationId": re.sub(r"[^A-Za-z0-9_]", "_", operation_id),
        "requestBody": {"required": True, "content": {"application/json": content}},
        "responses": responses,
    }


def _prediction_schema(model: ServedModel) -> dict[str, Any]:
    labels = model.runtime.output_labels() if model.runtime else None
    if model.config.output.kind == "tensor":
        # Only runtimes that know their outputs' names and shapes (onnx) describe them.
        outputs = (model.runtime.output_schemas() if model.runtime else None) or {}
        if not outputs:
            return {
                "type": "object",
                "description": "The model's named outputs for this row.",
                "additionalProperties": True,
            }
        return {
            "type": "object",
            "description": "The model's named outputs for this row.",
            "properties": outputs,
            "required": list(outputs),
        }
    if model.config.output.kind == "regressor":
        return {
            "type": "object",
            "properties": {"value": {"type": "number"}},
            "required": ["value"],
        }
    label: dict[str, Any] = {"type": "string", "description": "The most probable class."}
    probabilities: dict[str, Any] = {
        "type": "object",
        "description": "Probability of each class.",
        "additionalProperties": {"type": "number", "minimum": 0, "maximum": 1},
    }
    if labels:
        label["enum"] = labels
        probabilities["properties"] = {
            name: {"type": "number", "minimum": 0, "maximum": 1} for name in labels
        }
        probabilities["required"] = labels
    return {
        "type": "object",
        "properties": {"label": label, "probabilities": probabilities},
        "required": ["label", "probabilities"],
    }


def _response_schema(model: ServedModel, title: str) -> dict[str, Any]:
    return {
        "title": title,
        "type": "object",
        "properties": {
            "model": {"type": "string", "const": model.name},
            "version": {"type": "string", "description": "The model version that answered."},
            "request_id": {"type": "string"},
            "predictions": {"type": "array", "items": _prediction_schema(model)},
        },
        "required": ["model", "version", "request_id", "predictions"],
    }
