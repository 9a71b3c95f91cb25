"""Property-based fuzzing of the whole OpenAPI document (v1 and v2) against a real server.

Schemathesis generates requests from `/openapi.json` with a fixed seed (`derandomize`) and a
bounded number of cases per operation, and checks every response: never a 5xx, the body
conforms to the documented schema, and the status code is one the operation documents.

The admin endpoints and the v2 repository load/unload are left out: they need a token, or
would unload the models every other operation is fuzzed against.

Hypothesis is driven by hand per operation (not `schema.parametrize()` with `from_fixture`,
whose lazy loader breaks on pytest 9: `'Function' object has no attribute '_nodeid'`), so the
schema can come from the real server a fixture starts, and every failing request is collected
and reported at once, with a curl command to replay it.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode
from schemathesis.checks import (
    not_a_server_error,
    response_schema_conformance,
    status_code_conformance,
)
from schemathesis.core.failures import FailureGroup
from schemathesis.core.result import Ok

from tests.conftest import CAR, TITANIC
from tests.integration.server import RunningServer, running_server

pytestmark = pytest.mark.slow

Operation = schemathesis.APIOperation[Any, Any, Any, Any]

MAX_EXAMPLES = 50  # per operation and mode: ~1000 requests, about 30 s on 2 cores
MODELS = {"titanic": "1.0.0", "car_evaluation": "1.0.0"}
EXCLUDED = re.compile(r"^/admin/|^/v2/repository/models/")
CHECKS = {
    "not_a_server_error": not_a_server_error,
    "response_schema_conformance": response_schema_conformance,
    "status_code_conformance": status_code_conformance,
}


@dataclass
class Findings:
    """The first failing request of each (operation, check), as a replayable curl command."""

    failures: dict[tuple[str, str], str] = field(default_factory=dict)
    cases: int = 0
    statuses: dict[int, int] = field(default_factory=dict)

    def record(self, label: str, check: str, message: str, curl: str) -> None:
        self.failures.setdefault((label, check), f"{label} [{check}]: {message}\n  {curl}")

    def of(self, check: str) -> list[str]:
        return [text for (_, name), text in sorted(self.failures.items()) if name == check]


@pytest.fixture(scope="module")
def fuzz_server(
    examples_built: None, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[RunningServer]:
    log = tmp_path_factory.mktemp("fuzz") / "server.log"
    with running_server([str(TITANIC), str(CAR), "--workers", "1"], log) as server:
        yield server


def _fuzz_operation(
    operation: Operation,
    mode: GenerationMode,
    base_url: str,
    findings: Findings,
) -> None:
    @given(case=operation.as_strategy(mode), model=st.sampled_from([None, *MODELS]))
    @settings(
        max_examples=MAX_EXAMPLES,
        derandomize=True,
        deadline=None,
        database=None,
        suppress_health_check=list(HealthCheck),
        phases=[Phase.explicit, Phase.generate],  # nothing raises: no shrinking needed
    )
    def run(case: schemathesis.Case[Any], model: str | None) -> None:
        # Two cases in three address a served model: random names alone only reach 404s.
        if model is not None and case.path_parameters and "name" in case.path_parameters:
            case.path_parameters["name"] = model
            if "version" in case.path_parameters:
                case.path_parameters["version"] = MODELS[model]
        findings.cases += 1
        response = case.call(base_url=base_url, timeout=30)
        findings.statuses[response.status_code] = findings.statuses.get(response.status_code, 0) + 1
        for name, check in CHECKS.items():
            try:
                case.validate_response(response, checks=[check])
            except (AssertionError, FailureGroup) as exc:
                message = " ".join(str(exc).split())[:400]
                findings.record(operation.label, name, message, case.as_curl_command())

    try:
        run()
    except Unsatisfiable:
        # Nothing to make invalid (no parameters, no body): only positive cases exist.
        assert mode is GenerationMode.NEGATIVE, operation.label


@pytest.fixture(scope="module")
def findings(fuzz_server: RunningServer) -> Findings:
    """Fuzz every (non-excluded) operation once; the tests below look at what was found."""
    schema = schemathesis.openapi.from_url(f"{fuzz_server.url}/openapi.json")
    result = Findings()
    fuzzed = []
    for item in schema.get_all_operations():
        assert isinstance(item, Ok), f"the OpenAPI document is invalid: {item}"
        operation = item.ok()
        if EXCLUDED.search(operation.path):
            continue
        fuzzed.append(operation.label)
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
            _fuzz_operation(operation, mode, fuzz_server.url, result)
    for expected in (
        "POST /v1/models/titanic/predict",
        "POST /v1/models/car_evaluation/versions/1.0.0/predict",
        "POST /v2/models/{name}/infer",
        "GET /v2/models/{name}",
        "GET /v1/models/{name}",
    ):
        assert expected in fuzzed, f"{expected} not fuzzed: {fuzzed}"
    # The service survived the fuzzing and still predicts.
    assert fuzz_server.process.poll() is None
    return result


def test_no_server_errors(findings: Findings) -> None:
    print(f"fuzzed {findings.cases} cases; statuses: {sorted(findings.statuses.items())}")
    assert findings.cases > 100, findings
    assert not findings.of("not_a_server_error"), "\n".join(findings.of("not_a_server_error"))


def test_responses_conform_to_their_schema(findings: Findings) -> None:
    failures = findings.of("response_schema_conformance")
    assert not failures, "\n".join(failures)


def test_status_codes_are_documented(findings: Findings) -> None:
    failures = findings.of("status_code_conformance")
    assert not failures, "\n".join(failures)
