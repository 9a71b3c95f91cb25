"""fastinfer's grpc_service.proto speaks the protocol tritonclient speaks: every message and
field it declares has tritonclient's number, type and cardinality, and every method its path
and message types. Both define the `inference` package, which one process's descriptor pool
holds once: fastinfer's side is read in a subprocess."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("grpc")
REPO = Path(__file__).resolve().parents[2]

_DESCRIBE = """
import json
from google.protobuf.descriptor import Descriptor
import {module} as pb

def fields(message: Descriptor, out: dict) -> None:
    out[message.full_name] = {{
        f.name: [f.number, f.type, f.is_repeated, f.message_type and f.message_type.full_name]
        for f in message.fields
    }}
    for nested in message.nested_types:
        fields(nested, out)

out = {{}}
for message in pb.DESCRIPTOR.message_types_by_name.values():
    fields(message, out)
service = pb.DESCRIPTOR.services_by_name["GRPCInferenceService"]
methods = {{m.name: [m.input_type.full_name, m.output_type.full_name] for m in service.methods}}
print(json.dumps({{"messages": out, "methods": methods}}))
"""


def _describe(module: str) -> dict[str, Any]:
    result = subprocess.run(
        [sys.executable, "-c", _DESCRIBE.format(module=module)],
        capture_output=True,
        text=True,
        check=True,
        cwd=REPO,
        env={"PYTHONPATH": str(REPO / "src")},
    )
    described: dict[str, Any] = json.loads(result.stdout)
    return described


def test_every_message_and_method_matches_tritonclient() -> None:
    pytest.importorskip("tritonclient.grpc")
    ours = _describe("fastinfer.grpc.proto.grpc_service_pb2")
    theirs = _describe("tritonclient.grpc.service_pb2")
    assert ours["methods"], "no methods declared"
    for method, types in ours["methods"].items():
        assert theirs["methods"].get(method) == types, method
    for message, fields in ours["messages"].items():
        assert message in theirs["messages"], message
        for name, spec in fields.items():
            assert theirs["messages"][message].get(name) == spec, f"{message}.{name}"


def test_the_stubs_import_with_the_installed_protobuf_and_grpcio() -> None:
    """The committed gencode's version checks pass (they raise at import otherwise)."""
    code = (
        "from fastinfer.grpc.proto import grpc_service_pb2 as pb, grpc_service_pb2_grpc as g\n"
        "assert pb.ModelInferRequest(model_name='m').model_name == 'm'\n"
        "assert g.add_GRPCInferenceServiceServicer_to_server\n"
    )
    subprocess.run(
        [sys.executable, "-c", code], check=True, cwd=REPO, env={"PYTHONPATH": str(REPO / "src")}
    )
