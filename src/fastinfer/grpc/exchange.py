"""The gRPC infer exchange: a `ModelInferRequest` in, a `ModelInferResponse` out, through the
data plane exactly as REST's `V2Exchange` goes (the same decoder, checks and output tensors)."""

from __future__ import annotations

from fastinfer.dataplane import Answer
from fastinfer.errors import InferenceFailed
from fastinfer.grpc.proto import grpc_service_pb2 as pb
from fastinfer.grpc.tensors import infer_response, request_document
from fastinfer.observability.logging import get_logger
from fastinfer.protocols import v2, v2_outputs
from fastinfer.repository.served import ServedModel
from fastinfer.runtimes import Row

log = get_logger("fastinfer.grpc")


class GrpcExchange:
    """An infer call's tensors → rows; predictions → output tensors (raw unless asked not)."""

    __slots__ = ("_decoded", "_request")
    validated = False  # tensors decode to raw rows; the data plane validates them

    def __init__(self, request: pb.ModelInferRequest) -> None:
        self._request = request
        self._decoded: v2.InferRequest | None = None

    async def decode(self, model: ServedModel) -> list[Row]:
        assert model.schema is not None and model.runtime is not None
        document, binary = request_document(self._request)
        decoded = v2.decode_infer_document(
            document,
            memoryview(binary),
            model.schema.fields,
            has_binary=True,
            max_rows=model.schema.max_rows,
        )
        v2_outputs.check_requested_outputs(
            decoded.outputs,
            v2_outputs.available_outputs(model.config.output.kind, model.runtime.output_schemas()),
        )
        self._decoded = decoded
        return decoded.rows

    def encode(self, answer: Answer) -> pb.ModelInferResponse:
        decoded, model = self._decoded, answer.model
        assert decoded is not None and model.runtime is not None
        try:
            tensors = v2_outputs.predictions_to_outputs(
                answer.predictions, model.config.output.kind, model.runtime.output_labels()
            )
            # gRPC answers in raw_output_contents unless the request says binary_data_output
            # false (REST's default is JSON; Triton's gRPC answers raw, and tritonclient reads
            # only raw contents, and BYTES contents, back).
            binary = decoded.parameters.get("binary_data_output", True)
            chosen = v2_outputs.choose_outputs(tensors, decoded.outputs, binary)
            return infer_response(
                model.name,
                model.version,
                decoded.id or answer.request_id,
                answer.request_id,
                chosen,
            )
        except ValueError as exc:
            if isinstance(exc, v2.V2Error):
                raise
            log.error("grpc_output_encoding_failed", model=model.label, error=str(exc))
            raise InferenceFailed("the model's outputs do not fit a v2 tensor") from None
