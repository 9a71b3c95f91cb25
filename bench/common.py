"""Paths, request bodies, a loopback-only HTTP helper and machine facts shared by the harness."""

from __future__ import annotations

import csv
import http.client
import importlib.metadata
import os
import platform
import subprocess
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import orjson

ROOT = Path(__file__).resolve().parent.parent
BENCH = ROOT / "bench"
BUILD = BENCH / "build"
LOGS = BUILD / "logs"
BODIES = BUILD / "bodies"
RESULTS = BENCH / "results"
TITANIC_DIR = ROOT / "examples" / "titanic"
MLP_DIR = BUILD / "models" / "mlp"
TABULAR_DIR = BUILD / "models" / "tabular"  # bench/models/tabular.py writes it
HOST = "127.0.0.1"  # the only address the harness ever talks to

MLP_FEATURES = 256
MLP_SEED = 20240601
PACKAGES = (
    "fastinfer",
    "fastapi",
    "starlette",
    "uvicorn",
    "uvloop",
    "httptools",
    "pydantic",
    "pydantic-core",
    "orjson",
    "numpy",
    "pandas",
    "scikit-learn",
    "onnxruntime",
    "matplotlib",
)


@dataclass(frozen=True)
class Workload:
    """One model's request bodies: `rows` rows per request, saved as JSON files."""

    model: str
    rows: int
    body_path: Path

    @property
    def path(self) -> str:
        return f"/v1/models/{self.model}/predict"


@dataclass(frozen=True)
class HttpResult:
    status: int
    body: bytes
    seconds: float


def http_request(
    port: int, method: str, path: str, body: bytes | None = None, timeout: float = 5.0
) -> HttpResult:
    """One request to 127.0.0.1:`port` (http.client: never a proxy, never another host)."""
    started = time.perf_counter()
    conn = http.client.HTTPConnection(HOST, port, timeout=timeout)
    try:
        headers = {"Content-Type": "application/json"} if body is not None else {}
        conn.request(method, path, body=body, headers=headers)
        response = conn.getresponse()
        data = response.read()
        return HttpResult(response.status, data, time.perf_counter() - started)
    finally:
        conn.close()


# The v2 datatype of each Titanic column (as the server's v2 metadata declares them): what REST and
# gRPC clients send for the example.
TITANIC_V2_DATATYPES = {
    "PassengerId": "INT64",
    "Pclass": "INT64",
    "Name": "BYTES",
    "Sex": "BYTES",
    "Age": "FP64",
    "SibSp": "INT64",
    "Parch": "INT64",
    "Ticket": "BYTES",
    "Fare": "FP64",
    "Cabin": "BYTES",
    "Embarked": "BYTES",
}


def titanic_rows(count: int, *, exact: bool = True) -> list[dict[str, Any]]:
    """The first `count` holdout passengers as typed JSON rows (the label column dropped).

    With `exact=False` fewer rows are fine (the in-process limit cycles through them).
    """
    from fastinfer.model.spec import load_model_directory
    from fastinfer.repository.local import coerce_text

    config = load_model_directory(TITANIC_DIR).config
    fields = {f.name: f for f in config.inputs or []}
    rows: list[dict[str, Any]] = []
    with (TITANIC_DIR / "holdout.csv").open(newline="", encoding="utf-8") as handle:
        for record in csv.DictReader(handle):
            if len(rows) >= count:
                break
            rows.append({k: coerce_text(v, fields[k]) for k, v in record.items() if k in fields})
    if exact and len(rows) < count:
        raise RuntimeError(f"holdout.csv has {len(rows)} rows; {count} are needed")
    return rows


def mlp_input_name(model_dir: Path = MLP_DIR) -> str:
    """The MLP's one input field: from its model.yaml, else the ONNX graph's input (as served)."""
    from fastinfer.model.spec import load_model_directory

    directory = load_model_directory(model_dir)
    if directory.config.inputs:
        return directory.config.inputs[0].name
    import onnxruntime as ort

    session = ort.InferenceSession(str(directory.artefact_path), providers=["CPUExecutionProvider"])
    return str(session.get_inputs()[0].name)


def mlp_rows(count: int, model_dir: Path = MLP_DIR) -> list[dict[str, Any]]:
    """`count` deterministic rows of 256 float32 values (printed with 7 significant digits)."""
    rng = np.random.default_rng(MLP_SEED)
    values = rng.standard_normal((count, MLP_FEATURES)).astype(np.float32)
    name = mlp_input_name(model_dir)
    return [{name: [float(f"{v:.7g}") for v in row]} for row in values]


def model_rows(model: str, count: int, *, exact: bool = True) -> list[dict[str, Any]]:
    """`count` request rows for `model` (Titanic: up to `count` when not `exact`)."""
    if model == "titanic":
        return titanic_rows(count, exact=exact)
    if model == "mlp":
        return mlp_rows(count)
    if model == "tabular":
        from bench.models.tabular import tabular_rows

        return tabular_rows(count)
    raise ValueError(f"unknown model {model!r}")


def model_dir(model: str) -> Path:
    return {"titanic": TITANIC_DIR, "mlp": MLP_DIR, "tabular": TABULAR_DIR}[model]


def write_bodies(models: list[str], row_counts: list[int]) -> list[Workload]:
    """Write `{"inputs": [...]}` bodies for every model and row count; return the workloads."""
    BODIES.mkdir(parents=True, exist_ok=True)
    workloads: list[Workload] = []
    for model in models:
        rows = model_rows(model, max(row_counts))
        for count in row_counts:
            path = BODIES / f"{model}-{count}.json"
            path.write_bytes(orjson.dumps({"inputs": rows[:count]}))
            workloads.append(Workload(model, count, path))
    return workloads


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _git_revision() -> str:
    try:
        out = subprocess.run(
            ["git", "-C", str(ROOT), "describe", "--always", "--dirty", "--abbrev=12"],
            capture_output=True,
            text=True,
            timeout=10,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired):
        return "unknown"
    return out.stdout.strip() or "unknown"


def machine_facts() -> dict[str, Any]:
    """What the numbers were measured on."""
    versions: dict[str, str | None] = {}
    for name in PACKAGES:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            versions[name] = None
    meminfo = (
        Path("/proc/meminfo").read_text().splitlines()[0] if Path("/proc/meminfo").exists() else ""
    )
    return {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "cpu_model": _cpu_model(),
        "cpu_count": os.cpu_count(),
        "cpus_usable": len(os.sched_getaffinity(0)),
        "memory": " ".join(meminfo.split()[1:]),
        "kernel": platform.release(),
        "os": platform.platform(),
        "python": platform.python_version(),
        "packages": versions,
        "git_revision": _git_revision(),
    }


def quiet_logging() -> None:
    """Keep fastinfer's load messages (in harness processes) out of the harness's output."""
    try:
        from fastinfer.observability.logging import configure_logging

        configure_logging("warning", "console", background=False)
    except Exception as exc:  # an internal API: its absence costs only some noise
        print(f"bench: fastinfer logging left as is ({exc})")
