"""Bad settings explained to an operator: one line per problem, named as they wrote it, and a
warning for a `FASTINFER_*` variable that is no setting (a typo must not pass silently)."""

from __future__ import annotations

import difflib
import json
import re
from collections.abc import Iterable, Mapping

from pydantic import ValidationError
from pydantic_core import ErrorDetails

from fastinfer.config import Settings

# FASTINFER_* variables that are read outside Settings (not typos).
OTHER_VARIABLES = frozenset({"FASTINFER_GIT_REVISION", "FASTINFER_RUN_DIR"})
# Kubernetes service links of a Service named fastinfer (FASTINFER_SERVICE_HOST,
# FASTINFER_PORT_8000_TCP_ADDR...): not ours, and not worth a warning.
_SERVICE_LINK = re.compile(r"^FASTINFER_(SERVICE_.*|PORT_\d+_.*)$")
_SECRETS = frozenset({"admin_token", "prediction_log_dsn"})  # never echoed in an error
_FORMS = {"version_policy": "must be all, latest or latest:N"}
_SETTINGS_ERROR = re.compile(r'error parsing value for field "(\w+)"')


def variable_name(field: str) -> str:
    """The environment variable of a settings field."""
    return f"FASTINFER_{field.upper()}"


def explain_settings_error(exc: Exception, options: Mapping[str, str] | None = None) -> list[str]:
    """One line per problem, named as the operator wrote it (`FASTINFER_WORKERS`, or the
    option in `options`: field → option), instead of pydantic's dump and its links."""
    options = options or {}
    if isinstance(exc, ValidationError):
        return [_explain(error, options) for error in exc.errors()]
    match = _SETTINGS_ERROR.search(str(exc))
    if match is not None:  # pydantic-settings could not decode a JSON value
        cause = exc.__cause__
        detail = f" ({cause})" if isinstance(cause, json.JSONDecodeError) else ""
        return [f"{variable_name(match.group(1))}: must be JSON{detail}"]
    return [str(exc)]


def _explain(error: ErrorDetails, options: Mapping[str, str]) -> str:
    loc = error["loc"]
    field = str(loc[0]) if loc else ""
    name = options.get(field) or variable_name(field)
    name += "".join(f"[{part}]" if isinstance(part, int) else f".{part}" for part in loc[1:])
    kind, ctx, value = error["type"], error.get("ctx") or {}, error.get("input")
    problems = {
        "int_parsing": "must be a whole number",
        "float_parsing": "must be a number",
        "bool_parsing": "must be true or false",
        "json_invalid": "must be JSON",
        "missing": "is missing",
        "extra_forbidden": "is not a known key",
        "greater_than_equal": f"must be at least {ctx.get('ge')}",
        "greater_than": f"must be more than {ctx.get('gt')}",
        "less_than_equal": f"must be at most {ctx.get('le')}",
        "less_than": f"must be less than {ctx.get('lt')}",
        "literal_error": f"must be one of {ctx.get('expected')}",
        "string_pattern_mismatch": _FORMS.get(field, f"must match {ctx.get('pattern')}"),
    }
    problem = problems.get(kind) or error["msg"].removeprefix("Value error, ")
    if field not in _SECRETS and isinstance(value, str | int | float) and kind != "missing":
        problem += f" (got {value!r})"
    if field == "port" and isinstance(value, str) and value.startswith("tcp://"):
        problem += "; a Kubernetes service link? set enableServiceLinks: false"
    return f"{name}: {problem}"


def unknown_variables(names: Iterable[str]) -> list[str]:
    """A warning for each `FASTINFER_*` name that is no setting (it would be ignored), with the
    closest setting's name when there is one: a typo must not pass silently."""
    fields = list(Settings.model_fields)
    known = {variable_name(field) for field in fields}
    warnings = []
    for name in sorted({n.upper() for n in names if n.upper().startswith("FASTINFER_")}):
        if name in known or name in OTHER_VARIABLES or _SERVICE_LINK.match(name):
            continue
        # Compared without the prefix, which every name shares (it would make all "close").
        close = difflib.get_close_matches(name.lower().removeprefix("fastinfer_"), fields, n=1)
        hint = (
            f"; did you mean {variable_name(close[0])}?"
            if close
            else " (docs/configuration.md lists them)"
        )
        warnings.append(f"{name} is not a fastinfer setting and is ignored{hint}")
    return warnings
