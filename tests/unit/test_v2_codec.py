"""The Open Inference Protocol v2 codec, checked against itself and against tritonclient.

tritonclient builds the requests (its own body builder, so the wire format is the client's, not
ours) and parses the responses (`InferResult.from_response_body` + `as_numpy`).
"""

from __future__ import annotations

import math
import struct
from typing import Any

import numpy as np
import orjson
import pytest
import tritonclient.http as triton
from tritonclient.http import _utils as triton_utils

from fastinfer.model.schema import RowSchema
from fastinfer.model.spec import InputField
from fastinfer.protocols.v2 import (
    HEADER_LENGTH_HEADER,
    InferRequest,
    RequestedOutput,
    V2Error,
    V2TooManyRows,
    batched_input,
    decode_infer_request,
    model_metadata,
    parse_header_length,
    server_metadata,
)
from fastinfer.protocols.v2_outputs import (
    OutputTensor,
    available_outputs,
    check_requested_outputs,
    encode_infer_response,
    predictions_to_outputs,
)

# --------------------------------------------------------------------------------------------
# helpers


def client_body(
    inputs: list[triton.InferInput],
    outputs: list[triton.InferRequestedOutput] | None = None,
    request_id: str = "",
    parameters: dict[str, Any] | None = None,
) -> tuple[bytes, int | None]:
    """The exact body (and header length) `InferenceServerClient.infer` would send."""
    body, json_size = triton_utils._get_inference_request(
        inputs=inputs,
        request_id=request_id,
        outputs=outputs,
        sequence_id=0,
        sequence_start=False,
        sequence_end=False,
        priority=0,
        timeout=None,
        custom_parameters=parameters,
    )
    return (body.encode() if isinstance(body, str) else body), json_size


def client_input(name: str, array: np.ndarray, datatype: str, *, binary: bool) -> triton.InferInput:
    tensor = triton.InferInput(name, list(array.shape), datatype)
    tensor.set_data_from_numpy(array, binary_data=binary)
    return tensor


def client_result(body: bytes, headers: dict[str, str]) -> triton.InferResult:
    length = headers.get(HEADER_LENGTH_HEADER)
    return triton.InferResult.from_response_body(
        body, verbose=False, header_length=int(length) if length is not None else None
    )


def json_request(inputs: list[Any], **extra: Any) -> bytes:
    return orjson.dumps({"inputs": inputs, **extra})


def binary_request(document: dict[str, Any], *chunks: bytes) -> tuple[bytes, int]:
    header = orjson.dumps(document)
    return header + b"".join(chunks), len(header)


def bytes_tensor(*values: bytes) -> bytes:
    return b"".join(struct.pack("<I", len(v)) + v for v in values)


def decode(
    body: bytes, fields: list[InputField], header_length: int | None = None, max_rows: int = 100
) -> InferRequest:
    return decode_infer_request(body, header_length, fields, max_rows=max_rows)


def field(name: str, type_: Any = "any", **kwargs: Any) -> InputField:
    return InputField(name=name, type=type_, **kwargs)


# --------------------------------------------------------------------------------------------
# every datatype, through tritonclient, JSON and binary

DATATYPE_CASES = [
    ("INT8", np.array([-128, 0, 127], dtype=np.int8), "integer"),
    ("INT16", np.array([-32768, 1, 32767], dtype=np.int16), "integer"),
    ("INT32", np.array([-(2**31), 2, 2**31 - 1], dtype=np.int32), "integer"),
    ("INT64", np.array([-(2**63), 3, 2**63 - 1], dtype=np.int64), "integer"),
    ("UINT8", np.array([0, 1, 255], dtype=np.uint8), "integer"),
    ("UINT16", np.array([0, 2, 65535], dtype=np.uint16), "integer"),
    ("UINT32", np.array([0, 3, 2**32 - 1], dtype=np.uint32), "integer"),
    ("UINT64", np.array([0, 4, 2**64 - 1], dtype=np.uint64), "integer"),
    ("FP16", np.array([-1.5, 0.0, 65504.0], dtype=np.float16), "number"),
    ("FP32", np.array([-1.25, 0.1, 3.4e38], dtype=np.float32), "number"),
    ("FP64", np.array([-1e300, 0.1, 2.5], dtype=np.float64), "number"),
    ("BOOL", np.array([True, False, True]), "boolean"),
    ("BYTES", np.array(["plain", "", "ünïcödé ✓"], dtype=object), "string"),
]
DATATYPE_IDS = [case[0] for case in DATATYPE_CASES]


@pytest.mark.parametrize("binary", [False, True], ids=["json", "binary"])
@pytest.mark.parametrize(("datatype", "array", "type_"), DATATYPE_CASES, ids=DATATYPE_IDS)
def test_every_datatype_decodes_from_tritonclient(
    datatype: str, array: np.ndarray, type_: str, binary: bool
) -> None:
    body, header_length = client_body([client_input("x", array, datatype, binary=binary)])
    assert (header_length is not None) is binary
    request = decode(body, [field("x", type_)], header_length)
    assert [row["x"] for row in request.rows] == array.tolist()
    assert all(
        type(row["x"]) is type(v) for row, v in zip(request.rows, array.tolist(), strict=True)
    )


@pytest.mark.parametrize("binary", [False, True], ids=["json", "binary"])
@pytest.mark.parametrize(("datatype", "array", "type_"), DATATYPE_CASES, ids=DATATYPE_IDS)
def test_every_datatype_shaped_and_accepted_by_an_any_field(
    datatype: str, array: np.ndarray, type_: str, binary: bool
) -> None:
    shaped = np.stack([array, array[::-1]])  # [2, 3]
    body, header_length = client_body([client_input("t", shaped, datatype, binary=binary)])
    request = decode(body, [field("t", "any", shape=[3])], header_length)
    assert [row["t"] for row in request.rows] == shaped.tolist()


def test_bf16_binary_is_widened_to_float() -> None:
    values = np.array([1.0, -2.5, 0.15625], dtype=np.float32)  # exact in bfloat16
    body, header_length = client_body([client_input("x", values, "BF16", binary=True)])
    request = decode(body, [field("x", "number")], header_length)
    assert [row["x"] for row in request.rows] == [1.0, -2.5, 0.15625]


def test_bytes_binary_with_raw_bytes_elements() -> None:
    array = np.array([b"caf\xc3\xa9", b"", b"x" * 300], dtype=np.object_)
    body, header_length = client_body([client_input("s", array, "BYTES", binary=True)])
    request = decode(body, [field("s", "string")], header_length)
    assert [row["s"] for row in request.rows] == ["café", "", "x" * 300]


def test_bool_binary_treats_any_nonzero_byte_as_true() -> None:
    document = {
        "inputs": [
            {"name": "b", "datatype": "BOOL", "shape": [3], "parameters": {"binary_data_size": 3}}
        ]
    }
    body, header_length = binary_request(document, b"\x00\x01\x02")
    request = decode(body, [field("b", "boolean")], header_length)
    assert [row["b"] for row in request.rows] == [False, True, True]


# --------------------------------------------------------------------------------------------
# rows: tabular columns, shaped tensors, flat vs nested, nulls


def test_tabular_columns_become_rows_in_field_order() -> None:
    fields = [
        field("age", "number", nullable=True),
        field("kind", "string"),
        field("count", "integer"),
        field("flag", "boolean", nullable=True),
        field("note", "string", nullable=True),
    ]
    body = json_request(
        [
            {"name": "count", "datatype": "INT64", "shape": [3], "data": [1, 2, 3]},
            {"name": "kind", "datatype": "BYTES", "shape": [3, 1], "data": [["a"], ["b"], ["a"]]},
            {"name": "age", "datatype": "INT32", "shape": [3], "data": [30, None, 40]},
            {"name": "flag", "datatype": "BOOL", "shape": [3, 1], "data": [True, False, True]},
        ],
        id="abc",
        parameters={"custom": 1},
    )
    request = decode(body, fields)
    assert request.id == "abc"
    assert request.parameters == {"custom": 1}
    assert request.outputs is None
    assert request.binary_outputs is False
    assert request.rows == [
        {"age": 30, "kind": "a", "count": 1, "flag": True, "note": None},
        {"age": None, "kind": "b", "count": 2, "flag": False, "note": None},
        {"age": 40, "kind": "a", "count": 3, "flag": True, "note": None},
    ]
    assert all(list(row) == [f.name for f in fields] for row in request.rows)


def test_rows_pass_the_row_schema() -> None:
    fields = [field("x", "number", minimum=0), field("c", "string", allowed=["a", "b"])]
    body = json_request(
        [
            {"name": "x", "datatype": "FP64", "shape": [2], "data": [1.5, 2]},
            {"name": "c", "datatype": "BYTES", "shape": [2], "data": ["a", "b"]},
        ]
    )
    schema = RowSchema("m", fields, allow_extra=False, max_rows=10, example=None)
    rows = decode(body, fields).rows
    assert schema.validate_rows(rows) == [{"x": 1.5, "c": "a"}, {"x": 2.0, "c": "b"}]


@pytest.mark.parametrize(
    "data",
    [
        [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12],
        [[[1, 2, 3], [4, 5, 6]], [[7, 8, 9], [10, 11, 12]]],
    ],
    ids=["flat", "nested"],
)
def test_shaped_json_input_flat_or_nested_gives_nested_rows(data: list[Any]) -> None:
    body = json_request([{"name": "img", "datatype": "INT64", "shape": [2, 2, 3], "data": data}])
    request = decode(body, [field("img", "integer", shape=[2, 3])])
    assert [row["img"] for row in request.rows] == [
        [[1, 2, 3], [4, 5, 6]],
        [[7, 8, 9], [10, 11, 12]],
    ]


def test_shaped_binary_input_gives_nested_rows() -> None:
    array = np.arange(24, dtype=np.float32).reshape(2, 3, 4)
    body, header_length = client_body([client_input("x", array, "FP32", binary=True)])
    request = decode(body, [field("x", "number", shape=[3, 4])], header_length)
    assert [row["x"] for row in request.rows] == array.tolist()


def test_shaped_bytes_binary_input_gives_nested_rows() -> None:
    array = np.array([["a", "b"], ["c", "d"], ["e", "f"]], dtype=object)
    body, header_length = client_body([client_input("w", array, "BYTES", binary=True)])
    request = decode(body, [field("w", "string", shape=[2])], header_length)
    assert [row["w"] for row in request.rows] == [["a", "b"], ["c", "d"], ["e", "f"]]


@pytest.mark.parametrize(
    ("shape", "data"),
    [([3], [1.0, 2.0, 3.0]), ([3, 1], [1.0, 2.0, 3.0]), ([3, 1], [[1.0], [2.0], [3.0]])],
)
def test_scalar_column_takes_n_or_n_by_1(shape: list[int], data: list[Any]) -> None:
    body = json_request([{"name": "x", "datatype": "FP64", "shape": shape, "data": data}])
    assert [row["x"] for row in decode(body, [field("x", "number")]).rows] == [1.0, 2.0, 3.0]


def test_integer_data_is_fine_for_a_number_field() -> None:
    body = json_request([{"name": "x", "datatype": "INT32", "shape": [2], "data": [1, 2]}])
    assert decode(body, [field("x", "number")]).rows == [{"x": 1}, {"x": 2}]


def test_json_nulls_pass_through_for_the_schema_to_judge() -> None:
    fields = [field("x", "number"), field("s", "string"), field("v", "integer", shape=[2])]
    body = json_request(
        [
            {"name": "x", "datatype": "FP32", "shape": [2], "data": [None, 1.5]},
            {"name": "s", "datatype": "BYTES", "shape": [2], "data": ["a", None]},
            {"name": "v", "datatype": "INT8", "shape": [2, 2], "data": [1, None, None, -3]},
        ]
    )
    assert decode(body, fields).rows == [
        {"x": None, "s": "a", "v": [1, None]},
        {"x": 1.5, "s": None, "v": [None, -3]},
    ]


def test_non_finite_binary_floats_pass_through() -> None:
    array = np.array([np.nan, np.inf, -np.inf], dtype=np.float32)
    body, header_length = client_body([client_input("x", array, "FP32", binary=True)])
    values = [row["x"] for row in decode(body, [field("x", "number")], header_length).rows]
    assert math.isnan(values[0])
    assert values[1:] == [math.inf, -math.inf]


def test_mixed_binary_and_json_inputs_from_tritonclient() -> None:
    fields = [
        field("a", "number"),
        field("b", "string"),
        field("c", "integer", shape=[2]),
        field("d", "boolean"),
        field("e", "string"),
    ]
    a = np.array([0.5, 1.5], dtype=np.float64)
    b = np.array(["x", "yy"], dtype=object)
    c = np.array([[1, 2], [3, 4]], dtype=np.int16)
    d = np.array([True, False])
    e = np.array(["p", "qq"], dtype=object)
    body, header_length = client_body(
        [
            client_input("a", a, "FP64", binary=True),
            client_input("b", b, "BYTES", binary=False),
            client_input("c", c, "INT16", binary=True),
            client_input("d", d, "BOOL", binary=False),
            client_input("e", e, "BYTES", binary=True),
        ]
    )
    request = decode(body, fields, header_length)
    assert request.rows == [
        {"a": 0.5, "b": "x", "c": [1, 2], "d": True, "e": "p"},
        {"a": 1.5, "b": "yy", "c": [3, 4], "d": False, "e": "qq"},
    ]


def test_hand_built_binary_request_with_offsets() -> None:
    document = {
        "inputs": [
            {
                "name": "a",
                "datatype": "UINT16",
                "shape": [2],
                "parameters": {"binary_data_size": 4},
            },
            {"name": "b", "datatype": "FP64", "shape": [2], "data": [1, 2.5]},
            {
                "name": "c",
                "datatype": "BYTES",
                "shape": [2],
                "parameters": {"binary_data_size": 13},
            },
        ],
        "outputs": [{"name": "value", "parameters": {"binary_data": True}}, {"name": "other"}],
        "parameters": {"binary_data_output": False},
    }
    body, header_length = binary_request(
        document, np.array([7, 65535], "<u2").tobytes(), bytes_tensor(b"hi", b"you")
    )
    fields = [field("a", "integer"), field("b", "number"), field("c", "string")]
    request = decode(body, fields, header_length)
    assert request.rows == [{"a": 7, "b": 1, "c": "hi"}, {"a": 65535, "b": 2.5, "c": "you"}]
    assert request.outputs == [RequestedOutput("value", True), RequestedOutput("other", None)]


def test_header_length_equal_to_the_body_is_a_plain_json_request() -> None:
    body = json_request([{"name": "x", "datatype": "INT64", "shape": [1], "data": [5]}])
    assert decode(body, [field("x", "integer")], header_length=len(body)).rows == [{"x": 5}]


def test_max_rows_is_inclusive() -> None:
    body = json_request([{"name": "x", "datatype": "INT64", "shape": [3], "data": [1, 2, 3]}])
    assert len(decode(body, [field("x", "integer")], max_rows=3).rows) == 3


def test_too_many_rows_is_its_own_error_and_is_raised_before_decoding() -> None:
    # The data is short, so decoding would fail: the row limit must be what is reported.
    body = json_request([{"name": "x", "datatype": "INT64", "shape": [1000], "data": [1]}])
    with pytest.raises(V2TooManyRows) as caught:
        decode(body, [field("x", "integer")], max_rows=10)
    assert caught.value.rows == 1000
    assert caught.value.limit == 10
    assert isinstance(caught.value, V2Error)
    assert str(caught.value) == "the request has 1000 rows; at most 10 are accepted in one request"


# --------------------------------------------------------------------------------------------
# request parameters and requested outputs


def test_tritonclient_default_asks_for_binary_outputs() -> None:
    body, header_length = client_body(
        [client_input("x", np.array([1.0]), "FP64", binary=False)], request_id="r-1"
    )
    assert header_length is None
    request = decode(body, [field("x", "number")])
    assert request.id == "r-1"
    assert request.outputs is None
    assert request.binary_outputs is True


def test_tritonclient_requested_outputs_keep_their_binary_flags() -> None:
    body, header_length = client_body(
        [client_input("x", np.array([1.0]), "FP64", binary=True)],
        outputs=[
            triton.InferRequestedOutput("probabilities", binary_data=True),
            triton.InferRequestedOutput("label", binary_data=False),
        ],
        parameters={"tenant": "blue"},
    )
    request = decode(body, [field("x", "number")], header_length)
    assert request.outputs == [
        RequestedOutput("probabilities", True),
        RequestedOutput("label", False),
    ]
    assert request.binary_outputs is False
    assert request.parameters == {"tenant": "blue"}


def test_an_empty_outputs_list_asks_for_every_output() -> None:
    body = json_request(
        [{"name": "x", "datatype": "FP64", "shape": [1], "data": [1.0]}], outputs=[]
    )
    assert decode(body, [field("x", "number")]).outputs is None


def test_parse_header_length() -> None:
    assert parse_header_length(None) is None
    assert parse_header_length("123") == 123
    assert parse_header_length(" 7 ") == 7
    for bad in ("", "-1", "1.5", "ten", "\u00b2"):
        with pytest.raises(V2Error, match="Inference-Header-Content-Length must be a whole"):
            parse_header_length(bad)


# --------------------------------------------------------------------------------------------
# every request error, with its message

FIELDS = [
    field("n", "integer"),
    field("x", "number", nullable=True),
    field("s", "string", nullable=True),
    field("b", "boolean", nullable=True),
    field("v", "number", nullable=True, shape=[2]),
]


def _n(data: Any = None, **overrides: Any) -> dict[str, Any]:
    tensor = {"name": "n", "datatype": "INT64", "shape": [2], "data": [1, 2]}
    if data is not None:
        tensor["data"] = data
    tensor.update(overrides)
    return tensor


JSON_ERRORS: list[tuple[str, bytes, str]] = [
    ("malformed", b'{"inputs": [', "the request body is not valid JSON: "),
    ("not an object", b"[1, 2]", "the request must be a JSON object with 'inputs', not list"),
    ("no inputs", b"{}", "the request has no 'inputs' (a list of input tensors)"),
    ("inputs not list", b'{"inputs": {}}', "'inputs' must be a list of input tensors, not object"),
    ("inputs empty", b'{"inputs": []}', "'inputs' is empty; the request needs at least one"),
    ("input not object", json_request([5]), "inputs[0] must be an object, not number"),
    ("input without name", json_request([{"shape": [1]}]), "inputs[0] needs a string 'name'"),
    (
        "no datatype",
        json_request([{"name": "n", "shape": [1], "data": [1]}]),
        "input 'n' needs a 'datatype' (one of BOOL, INT8,",
    ),
    (
        "unknown datatype",
        json_request([_n(datatype="FLOAT")]),
        "input 'n': unknown datatype 'FLOAT'; expected one of BOOL, INT8, INT16",
    ),
    (
        "no shape",
        json_request([{"name": "n", "datatype": "INT64", "data": [1]}]),
        "input 'n' needs a 'shape': a list of dimensions, the first the rows",
    ),
    ("empty shape", json_request([_n(shape=[])]), "input 'n' needs a 'shape'"),
    (
        "negative shape",
        json_request([_n(shape=[-1])]),
        "input 'n': shape [-1] must hold whole numbers >= 0",
    ),
    (
        "float shape",
        json_request([_n(shape=[2.0])]),
        "input 'n': shape [2.0] must hold whole numbers >= 0",
    ),
    (
        "unknown input",
        json_request([_n(), {"name": "zz", "datatype": "INT64", "shape": [2], "data": [1, 2]}]),
        "input 'zz' is not an input of this model (inputs: n, x, s, b, v)",
    ),
    ("duplicate input", json_request([_n(), _n()]), "input 'n' appears twice"),
    (
        "missing required",
        json_request([{"name": "x", "datatype": "FP64", "shape": [1], "data": [1.0]}]),
        "required input(s) missing: 'n'",
    ),
    (
        "BYTES for integer",
        json_request([_n(["1", "2"], datatype="BYTES")]),
        "input 'n': datatype BYTES cannot hold the field's type integer "
        "(use INT8 or INT16 or INT32 or INT64 or UINT8 or UINT16 or UINT32 or UINT64)",
    ),
    (
        "FP32 for integer",
        json_request([_n([1.0, 2.0], datatype="FP32")]),
        "input 'n': datatype FP32 cannot hold the field's type integer",
    ),
    (
        "BOOL for integer",
        json_request([_n([True, False], datatype="BOOL")]),
        "input 'n': datatype BOOL cannot hold the field's type integer",
    ),
    (
        "FP32 for string",
        json_request([_n(), {"name": "s", "datatype": "FP32", "shape": [2], "data": [1, 2]}]),
        "input 's': datatype FP32 cannot hold the field's type string (use BYTES)",
    ),
    (
        "INT8 for boolean",
        json_request([_n(), {"name": "b", "datatype": "INT8", "shape": [2], "data": [1, 0]}]),
        "input 'b': datatype INT8 cannot hold the field's type boolean (use BOOL)",
    ),
    (
        "float in INT64 data",
        json_request([_n([1, 1.5])]),
        "input 'n': datatype INT64 cannot hold a number 1.5 in 'data'",
    ),
    (
        "bool in INT64 data",
        json_request([_n([1, True])]),
        "input 'n': datatype INT64 cannot hold a boolean True in 'data'",
    ),
    (
        "string in FP32 data",
        json_request([_n(), {"name": "x", "datatype": "FP32", "shape": [2], "data": [1, "2"]}]),
        "input 'x': datatype FP32 cannot hold a string '2' in 'data'",
    ),
    (
        "number in BOOL data",
        json_request([_n(), {"name": "b", "datatype": "BOOL", "shape": [2], "data": [1, 0]}]),
        "input 'b': datatype BOOL cannot hold an integer 1 in 'data'",
    ),
    (
        "number in BYTES data",
        json_request([_n(), {"name": "s", "datatype": "BYTES", "shape": [2], "data": ["a", 2]}]),
        "input 's': datatype BYTES cannot hold an integer 2 in 'data'",
    ),
    (
        "object in data",
        json_request([_n([1, {"a": 1}])]),
        "input 'n': datatype INT64 cannot hold an object {'a': 1} in 'data'",
    ),
    (
        "out of range",
        json_request([_n([1, 300], datatype="INT8")]),
        "input 'n', row 1: 300 is out of range for INT8 (-128..127)",
    ),
    (
        "negative unsigned",
        json_request([_n([-1, None], datatype="UINT32")]),
        "input 'n', row 0: -1 is out of range for UINT32 (0..4294967295)",
    ),
    (
        "too few elements",
        json_request([_n([1])]),
        "input 'n': 'data' has 1 elements; the shape [2] needs 2",
    ),
    (
        "nested too deep",
        json_request([_n([[1], [2]])]),
        "input 'n': 'data' nests deeper than the shape [2]",
    ),
    (
        "nested wrong",
        json_request(
            [_n(), {"name": "v", "datatype": "FP64", "shape": [2, 2], "data": [[1, 2], [3]]}]
        ),
        "input 'v': 'data' is neither flat nor nested to the shape [2, 2]",
    ),
    (
        "nested wrong top level",
        json_request([_n(), {"name": "v", "datatype": "FP64", "shape": [2, 2], "data": [[1, 2]]}]),
        "input 'v': nested 'data' has 1 items at the top level; the shape [2, 2] needs 2",
    ),
    (
        "data not list",
        json_request([_n(data=5)]),
        "input 'n': 'data' must be a list, not an integer",
    ),
    (
        "no data",
        json_request([{"name": "n", "datatype": "INT64", "shape": [2]}]),
        "input 'n' has no data: give 'data', or binary data after the JSON header with "
        "parameters.binary_data_size",
    ),
    (
        "data and binary",
        json_request([_n(parameters={"binary_data_size": 16})]),
        "input 'n' has both 'data' and binary_data_size; give one",
    ),
    (
        "bad binary size",
        json_request(
            [
                {
                    "name": "n",
                    "datatype": "INT64",
                    "shape": [2],
                    "parameters": {"binary_data_size": -1},
                }
            ]
        ),
        "input 'n': binary_data_size must be a whole number of bytes",
    ),
    (
        "binary without header",
        json_request(
            [
                {
                    "name": "n",
                    "datatype": "INT64",
                    "shape": [2],
                    "parameters": {"binary_data_size": 16},
                }
            ]
        ),
        "input 'n' has binary_data_size but the request has no Inference-Header-Content-Length",
    ),
    (
        "shared memory",
        json_request([_n(parameters={"shared_memory_region": "r"})]),
        "input 'n': parameter 'shared_memory_region' asks for shared memory, which is not "
        "supported",
    ),
    (
        "scalar column with 2 columns",
        json_request([_n([1, 2, 3, 4], shape=[2, 2])]),
        "input 'n' has shape [2, 2]; a scalar column takes [N] or [N, 1]",
    ),
    (
        "shaped field with wrong shape",
        json_request([_n(), {"name": "v", "datatype": "FP64", "shape": [2, 3], "data": [0] * 6}]),
        "input 'v' has shape [2, 3]; expected [N, 2] (N rows of the field's shape [2])",
    ),
    (
        "shaped field without row dims",
        json_request([_n(), {"name": "v", "datatype": "FP64", "shape": [2], "data": [0, 1]}]),
        "input 'v' has shape [2]; expected [N, 2]",
    ),
    (
        "rows disagree",
        json_request([_n(), {"name": "x", "datatype": "FP64", "shape": [3], "data": [1, 2, 3]}]),
        "inputs disagree on the number of rows: 'n' has 2, 'x' has 3",
    ),
    ("zero rows", json_request([_n([], shape=[0])]), "the inputs hold 0 rows; a request needs"),
    ("id not string", json_request([_n()], id=5), "'id' must be a string, not number"),
    (
        "parameters not object",
        json_request([_n()], parameters=[1]),
        "'parameters' of the request must be an object, not list",
    ),
    (
        "binary_data_output not bool",
        json_request([_n()], parameters={"binary_data_output": "yes"}),
        "parameter 'binary_data_output' must be true or false",
    ),
    ("outputs not list", json_request([_n()], outputs={}), "'outputs' must be a list, not object"),
    (
        "output without name",
        json_request([_n()], outputs=[{"parameters": {}}]),
        "outputs[0] must be an object with a string 'name'",
    ),
    (
        "duplicate output",
        json_request([_n()], outputs=[{"name": "label"}, {"name": "label"}]),
        "output 'label' is requested twice",
    ),
    (
        "binary_data not bool",
        json_request([_n()], outputs=[{"name": "label", "parameters": {"binary_data": 1}}]),
        "output 'label': parameter 'binary_data' must be true or false",
    ),
    (
        "classification",
        json_request([_n()], outputs=[{"name": "label", "parameters": {"classification": 2}}]),
        "output 'label': parameter 'classification' asks for the classification extension",
    ),
]


@pytest.mark.parametrize(
    ("body", "message"), [c[1:] for c in JSON_ERRORS], ids=[c[0] for c in JSON_ERRORS]
)
def test_request_errors(body: bytes, message: str) -> None:
    with pytest.raises(V2Error) as caught:
        decode(body, FIELDS)
    assert str(caught.value).startswith(message), str(caught.value)
    assert not isinstance(caught.value, V2TooManyRows)


def _binary_input(name: str, datatype: str, shape: list[int], size: int) -> dict[str, Any]:
    return {
        "name": name,
        "datatype": datatype,
        "shape": shape,
        "parameters": {"binary_data_size": size},
    }


BINARY_ERRORS: list[tuple[str, dict[str, Any], bytes, str]] = [
    (
        "size does not fit the shape",
        {"inputs": [_binary_input("n", "INT64", [2], 12)]},
        b"\x00" * 12,
        "input 'n': binary_data_size is 12 but shape [2] of INT64 needs 16 bytes",
    ),
    (
        "sizes do not add up (short)",
        {"inputs": [_binary_input("n", "INT64", [2], 16)]},
        b"\x00" * 15,
        "the binary data after the JSON header is 15 bytes but the inputs' binary_data_size add "
        "up to 16",
    ),
    (
        "sizes do not add up (extra)",
        {"inputs": [_binary_input("n", "INT64", [2], 16)]},
        b"\x00" * 17,
        "the binary data after the JSON header is 17 bytes but the inputs' binary_data_size add "
        "up to 16",
    ),
    (
        "bytes left over with no binary inputs",
        {"inputs": [_n()]},
        b"junk",
        "the binary data after the JSON header is 4 bytes but the inputs' binary_data_size add "
        "up to 0",
    ),
    (
        "BYTES ends inside a length",
        {"inputs": [_n(), _binary_input("s", "BYTES", [2], 7)]},
        bytes_tensor(b"abc"),
        "input 's': BYTES binary data ends inside element 1 (the shape needs 2 elements)",
    ),
    (
        "BYTES element longer than the data",
        {"inputs": [_n(), _binary_input("s", "BYTES", [2], 12)]},
        bytes_tensor(b"abc") + struct.pack("<I", 99) + b"x",
        "input 's': BYTES element 1 claims 99 bytes but only 1 remain",
    ),
    (
        "BYTES with bytes left over",
        {"inputs": [_n(), _binary_input("s", "BYTES", [2], 13)]},
        bytes_tensor(b"a", b"b") + b"xxx",
        "input 's': 3 bytes left over after the 2 BYTES elements the shape holds",
    ),
    (
        "BYTES not UTF-8",
        {"inputs": [_n(), _binary_input("s", "BYTES", [2], 10)]},
        bytes_tensor(b"a", b"\xff"),
        "input 's': BYTES element 1 is not valid UTF-8",
    ),
]


@pytest.mark.parametrize(
    ("document", "data", "message"),
    [c[1:] for c in BINARY_ERRORS],
    ids=[c[0] for c in BINARY_ERRORS],
)
def test_binary_request_errors(document: dict[str, Any], data: bytes, message: str) -> None:
    body, header_length = binary_request(document, data)
    with pytest.raises(V2Error) as caught:
        decode(body, FIELDS, header_length)
    assert str(caught.value).startswith(message), str(caught.value)


def test_header_length_beyond_the_body() -> None:
    with pytest.raises(V2Error, match=r"^Inference-Header-Content-Length is 99 but the body has"):
        decode(b"{}", FIELDS, header_length=99)


def test_malformed_json_header() -> None:
    with pytest.raises(V2Error, match=r"^the JSON header \(Inference-Header-Content-Length\) is"):
        decode(b'{"inputs": [1]}', FIELDS, header_length=5)


# --------------------------------------------------------------------------------------------
# predictions → output tensors


CLASSIFIER_PREDICTIONS = [
    {"label": "yes", "probabilities": {"yes": 0.8, "no": 0.2}},
    {"label": "no", "probabilities": {"no": 0.7, "yes": 0.3}},
]


def test_classifier_outputs_follow_the_label_order() -> None:
    label, probabilities = predictions_to_outputs(
        CLASSIFIER_PREDICTIONS, "classifier", ["no", "yes"]
    )
    assert (label.name, label.datatype, label.shape, label.data) == (
        "label",
        "BYTES",
        [2],
        ["yes", "no"],
    )
    assert (probabilities.name, probabilities.datatype, probabilities.shape) == (
        "probabilities",
        "FP64",
        [2, 2],
    )
    assert np.asarray(probabilities.data).tolist() == [[0.2, 0.8], [0.7, 0.3]]


def test_classifier_without_labels_uses_the_first_rows_order() -> None:
    _, probabilities = predictions_to_outputs(CLASSIFIER_PREDICTIONS, "classifier", None)
    assert np.asarray(probabilities.data).tolist() == [[0.8, 0.2], [0.3, 0.7]]


def test_classifier_with_one_class_and_with_no_rows() -> None:
    _, one = predictions_to_outputs(
        [{"label": "a", "probabilities": {"a": 1.0}}], "classifier", ["a"]
    )
    assert one.shape == [1, 1]
    assert np.asarray(one.data).tolist() == [[1.0]]
    label, empty = predictions_to_outputs([], "classifier", ["a", "b"])
    assert label.shape == [0]
    assert empty.shape == [0, 2]


def test_classifier_missing_probability_is_a_server_error() -> None:
    with pytest.raises(ValueError, match="a probability per label") as caught:
        predictions_to_outputs(CLASSIFIER_PREDICTIONS, "classifier", ["no", "maybe"])
    assert not isinstance(caught.value, V2Error)


def test_regressor_outputs() -> None:
    (value,) = predictions_to_outputs([{"value": 1.5}, {"value": 2}], "regressor", None)
    assert (value.name, value.datatype, value.shape) == ("value", "FP64", [2])
    assert np.asarray(value.data).tolist() == [1.5, 2.0]
    with pytest.raises(ValueError, match="must each hold a number 'value'"):
        predictions_to_outputs([{"label": "x"}], "regressor", None)


def test_tensor_outputs_stack_rows_and_infer_datatypes() -> None:
    predictions = [
        {"f": 1.5, "i": 1, "m": 1, "b": True, "s": "a", "v": [[1, 2]], "z": {"a": 0.1, "b": 0.9}},
        {
            "f": 2.5,
            "i": 2,
            "m": 2.5,
            "b": False,
            "s": "b",
            "v": [[3, 4]],
            "z": {"b": 0.4, "a": 0.6},
        },
    ]
    outputs = {o.name: o for o in predictions_to_outputs(predictions, "tensor", None)}
    assert list(outputs) == ["f", "i", "m", "b", "s", "v", "z"]
    described = {n: (o.datatype, o.shape) for n, o in outputs.items()}
    assert described == {
        "f": ("FP64", [2]),
        "i": ("INT64", [2]),
        "m": ("FP64", [2]),
        "b": ("BOOL", [2]),
        "s": ("BYTES", [2]),
        "v": ("INT64", [2, 1, 2]),
        "z": ("FP64", [2, 2]),
    }
    assert np.asarray(outputs["m"].data).tolist() == [1.0, 2.5]
    assert outputs["s"].data == ["a", "b"]
    assert np.asarray(outputs["v"].data).tolist() == [[[1, 2]], [[3, 4]]]
    assert np.asarray(outputs["z"].data).tolist() == [[0.1, 0.9], [0.6, 0.4]]
    assert predictions_to_outputs([], "tensor", None) == []


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ([1.0, None], "output 'o' holds null values, which a v2 tensor cannot carry"),
        ([1, "a"], "output 'o' mixes value types (BYTES, INT64), so no one datatype fits"),
        ([True, 1], "output 'o' mixes value types (BOOL, INT64)"),
        ([[1, 2], [3]], "output 'o': rows hold values of different shapes"),
        ([{"a": 1}, {"b": 2}], "output 'o': rows are maps with different keys"),
    ],
)
def test_tensor_output_errors(values: list[Any], message: str) -> None:
    with pytest.raises(ValueError) as caught:
        predictions_to_outputs([{"o": v} for v in values], "tensor", None)
    assert str(caught.value).startswith(message), str(caught.value)


# --------------------------------------------------------------------------------------------
# responses, decoded by tritonclient


def _classifier_outputs() -> list[OutputTensor]:
    return predictions_to_outputs(CLASSIFIER_PREDICTIONS, "classifier", ["no", "yes"])


def test_json_response_shape_and_content() -> None:
    body, headers = encode_infer_response(
        "car", "3", "fi-1", _classifier_outputs(), None, False, client_id="client-7"
    )
    assert headers == {"Content-Type": "application/json"}
    assert orjson.loads(body) == {
        "model_name": "car",
        "model_version": "3",
        "id": "client-7",
        "parameters": {"request_id": "fi-1"},
        "outputs": [
            {"name": "label", "datatype": "BYTES", "shape": [2], "data": ["yes", "no"]},
            {
                "name": "probabilities",
                "datatype": "FP64",
                "shape": [2, 2],
                "data": [0.2, 0.8, 0.7, 0.3],
            },
        ],
    }
    result = client_result(body, headers)
    assert result.as_numpy("label").tolist() == ["yes", "no"]
    assert result.as_numpy("probabilities").tolist() == [[0.2, 0.8], [0.7, 0.3]]


def test_response_id_falls_back_to_fastinfers_id() -> None:
    body, _ = encode_infer_response("m", "1", "fi-2", _classifier_outputs(), None, False)
    assert orjson.loads(body)["id"] == "fi-2"
    body, _ = encode_infer_response("m", "1", None, _classifier_outputs(), None, False)
    assert "id" not in orjson.loads(body)
    assert "parameters" not in orjson.loads(body)


def test_binary_response_for_every_output() -> None:
    body, headers = encode_infer_response("m", "1", "fi", _classifier_outputs(), None, True)
    assert headers["Content-Type"] == "application/octet-stream"
    header_length = int(headers[HEADER_LENGTH_HEADER])
    header = orjson.loads(body[:header_length])
    assert [o["parameters"] for o in header["outputs"]] == [
        {"binary_data_size": 4 + 3 + 4 + 2},
        {"binary_data_size": 32},
    ]
    assert all("data" not in o for o in header["outputs"])
    assert len(body) == header_length + 13 + 32
    result = client_result(body, headers)
    assert result.as_numpy("label").tolist() == [b"yes", b"no"]  # binary BYTES come back as bytes
    assert result.as_numpy("probabilities").tolist() == [[0.2, 0.8], [0.7, 0.3]]


def test_requested_outputs_filter_order_and_choose_binary() -> None:
    requested = [RequestedOutput("probabilities", True), RequestedOutput("label", False)]
    body, headers = encode_infer_response("m", "1", None, _classifier_outputs(), requested, False)
    header = orjson.loads(body[: int(headers[HEADER_LENGTH_HEADER])])
    assert [o["name"] for o in header["outputs"]] == ["probabilities", "label"]
    assert "parameters" in header["outputs"][0]
    assert header["outputs"][1]["data"] == ["yes", "no"]
    result = client_result(body, headers)
    assert result.as_numpy("label").tolist() == ["yes", "no"]
    assert result.as_numpy("probabilities").tolist() == [[0.2, 0.8], [0.7, 0.3]]

    only = [RequestedOutput("label")]
    body, headers = encode_infer_response("m", "1", None, _classifier_outputs(), only, False)
    assert headers == {"Content-Type": "application/json"}
    assert [o["name"] for o in orjson.loads(body)["outputs"]] == ["label"]


def test_binary_data_output_is_the_default_for_requested_outputs_without_a_flag() -> None:
    requested = [RequestedOutput("label"), RequestedOutput("probabilities", False)]
    body, headers = encode_infer_response("m", "1", None, _classifier_outputs(), requested, True)
    header = orjson.loads(body[: int(headers[HEADER_LENGTH_HEADER])])
    assert header["outputs"][0]["parameters"] == {"binary_data_size": 13}
    assert header["outputs"][1]["data"] == [0.2, 0.8, 0.7, 0.3]


def test_unknown_requested_output() -> None:
    with pytest.raises(V2Error) as caught:
        encode_infer_response(
            "m", "1", None, _classifier_outputs(), [RequestedOutput("score")], False
        )
    assert str(caught.value) == (
        "requested output(s) 'score' are not outputs of this model (outputs: label, probabilities)"
    )


def test_check_requested_outputs_and_available_outputs() -> None:
    check_requested_outputs(None, ["value"])
    check_requested_outputs([RequestedOutput("value", True)], ["value"])
    with pytest.raises(V2Error, match=r"^requested output\(s\) 'label', 'x' are not outputs"):
        check_requested_outputs([RequestedOutput("label"), RequestedOutput("x")], ["value"])
    assert available_outputs("classifier") == ["label", "probabilities"]
    assert available_outputs("regressor") == ["value"]
    assert available_outputs("tensor", {"a": {}, "b": {}}) == ["a", "b"]
    assert available_outputs("tensor", None) is None


@pytest.mark.parametrize("binary", [False, True], ids=["json", "binary"])
def test_tensor_outputs_round_trip_through_tritonclient(binary: bool) -> None:
    predictions = [
        {"emb": [[0.5, 1.0], [1.5, 2.0]], "n": 3, "ok": True, "tag": "ü"},
        {"emb": [[2.5, 3.0], [3.5, 4.0]], "n": -4, "ok": False, "tag": ""},
        {"emb": [[4.5, 5.0], [5.5, math.nan]], "n": 2**62, "ok": True, "tag": "zz"},
    ]
    outputs = predictions_to_outputs(predictions, "tensor", None)
    body, headers = encode_infer_response("t", "1", None, outputs, None, binary)
    result = client_result(body, headers)
    emb = result.as_numpy("emb")
    assert emb.dtype == np.float64
    assert emb.shape == (3, 2, 2)
    assert np.array_equal(emb, np.array([p["emb"] for p in predictions]), equal_nan=True)
    assert result.as_numpy("n").tolist() == [3, -4, 2**62]
    assert result.as_numpy("n").dtype == np.int64
    assert result.as_numpy("ok").tolist() == [True, False, True]
    tags = result.as_numpy("tag").tolist()
    expected = ["ü", "", "zz"]
    assert tags == ([t.encode() for t in expected] if binary else expected)


def test_fp16_and_other_datatypes_encode_in_json_and_binary() -> None:
    values = np.array([[0.5, -1.0], [65504.0, 0.0]], dtype=np.float16)
    tensors = [
        OutputTensor("h", "FP16", [2, 2], values),
        OutputTensor("u", "UINT8", [3], np.array([0, 7, 255], dtype=np.uint8)),
        OutputTensor("i", "INT32", [2], np.array([-5, 5], dtype=np.int32)),
    ]
    for binary in (False, True):
        body, headers = encode_infer_response("m", "1", None, tensors, None, binary)
        result = client_result(body, headers)
        assert result.as_numpy("h").tolist() == values.tolist()
        assert result.as_numpy("h").dtype == np.float16
        assert result.as_numpy("u").tolist() == [0, 7, 255]
        assert result.as_numpy("i").tolist() == [-5, 5]


# --------------------------------------------------------------------------------------------
# the whole exchange, tritonclient on both ends


@pytest.mark.parametrize("binary_inputs", [False, True], ids=["json-in", "binary-in"])
@pytest.mark.parametrize(
    "outputs",
    [
        None,
        [triton.InferRequestedOutput("probabilities", binary_data=False)],
        [
            triton.InferRequestedOutput("probabilities", binary_data=True),
            triton.InferRequestedOutput("label", binary_data=False),
        ],
    ],
    ids=["default", "json-out", "mixed-out"],
)
def test_tritonclient_exchange(
    binary_inputs: bool, outputs: list[triton.InferRequestedOutput] | None
) -> None:
    fields = [
        field("age", "number"),
        field("city", "string"),
        field("pixels", "integer", shape=[2]),
    ]
    age = np.array([[31.5], [40.0], [22.25]], dtype=np.float32)
    city = np.array([["Oslo"], ["Łódź"], ["Lima"]], dtype=object)
    pixels = np.array([[1, 2], [3, 4], [5, 6]], dtype=np.uint8)
    body, header_length = client_body(
        [
            client_input("age", age, "FP32", binary=binary_inputs),
            client_input("city", city, "BYTES", binary=binary_inputs),
            client_input("pixels", pixels, "UINT8", binary=binary_inputs),
        ],
        outputs=outputs,
        request_id="req-9",
    )
    request = decode(body, fields, header_length)
    assert request.rows == [
        {"age": 31.5, "city": "Oslo", "pixels": [1, 2]},
        {"age": 40.0, "city": "Łódź", "pixels": [3, 4]},
        {"age": 22.25, "city": "Lima", "pixels": [5, 6]},
    ]
    check_requested_outputs(request.outputs, available_outputs("classifier") or [])

    predictions = [
        {
            "label": "old" if row["age"] > 30 else "young",
            "probabilities": {"young": 0.25, "old": 0.75},
        }
        for row in request.rows
    ]
    tensors = predictions_to_outputs(predictions, "classifier", ["young", "old"])
    response, headers = encode_infer_response(
        "people",
        "2",
        "fi-9",
        tensors,
        request.outputs,
        request.binary_outputs,
        client_id=request.id,
    )
    result = client_result(response, headers)
    assert result.get_response()["id"] == "req-9"
    assert result.get_response()["model_name"] == "people"
    assert result.as_numpy("probabilities").tolist() == [[0.25, 0.75]] * 3
    labels = result.as_numpy("label")
    if outputs is not None and len(outputs) == 1:
        assert labels is None  # not requested
    else:
        wanted = ["old", "old", "young"]
        binary_label = outputs is None  # tritonclient's default asks for binary outputs
        assert labels.tolist() == ([w.encode() for w in wanted] if binary_label else wanted)


# --------------------------------------------------------------------------------------------
# metadata


def test_model_metadata_for_a_classifier() -> None:
    fields = [
        field("age", "number", nullable=True),
        field("n", "integer"),
        field("city", "string"),
        field("ok", "boolean"),
        field("whatever", "any"),
        field("img", "number", shape=[28, 28]),
    ]
    metadata = model_metadata(
        "m", ["1", "2"], "sklearn", fields, "classifier", ["a", "b", "c"], None
    )
    assert metadata == {
        "name": "m",
        "versions": ["1", "2"],
        "platform": "sklearn",
        "inputs": [
            {"name": "age", "datatype": "FP64", "shape": [-1]},
            {"name": "n", "datatype": "INT64", "shape": [-1]},
            {"name": "city", "datatype": "BYTES", "shape": [-1]},
            {"name": "ok", "datatype": "BOOL", "shape": [-1]},
            {"name": "whatever", "datatype": "BYTES", "shape": [-1]},
            {"name": "img", "datatype": "FP64", "shape": [-1, 28, 28]},
        ],
        "outputs": [
            {"name": "label", "datatype": "BYTES", "shape": [-1]},
            {"name": "probabilities", "datatype": "FP64", "shape": [-1, 3]},
        ],
    }
    unknown = model_metadata("m", ["1"], "onnx", fields, "classifier", None, None)
    assert unknown["outputs"][1]["shape"] == [-1, -1]


def test_model_metadata_for_regressor_and_tensor_models() -> None:
    fields = [field("x", "number")]
    regressor = model_metadata("r", ["1"], "sklearn", fields, "regressor", None, None)
    assert regressor["outputs"] == [{"name": "value", "datatype": "FP64", "shape": [-1]}]
    schemas: dict[str, dict[str, Any]] = {
        "scores": {
            "type": "array",
            "items": {"type": "array", "items": {"type": "number"}, "minItems": 4, "maxItems": 4},
        },
        "ids": {"type": "array", "items": {"type": "integer"}},
        "flag": {"type": "boolean"},
        "name": {"type": "string"},
        "zipmap": {"type": "object", "additionalProperties": {"type": "number"}},
        "opaque": {},
    }
    tensor = model_metadata("t", ["1"], "onnx", fields, "tensor", None, schemas)
    assert tensor["outputs"] == [
        {"name": "scores", "datatype": "FP64", "shape": [-1, -1, 4]},
        {"name": "ids", "datatype": "INT64", "shape": [-1, -1]},
        {"name": "flag", "datatype": "BOOL", "shape": [-1]},
        {"name": "name", "datatype": "BYTES", "shape": [-1]},
        {"name": "zipmap", "datatype": "FP64", "shape": [-1, -1]},
    ]
    assert model_metadata("t", ["1"], "onnx", fields, "tensor", None, None)["outputs"] == []


def test_metadata_matches_what_the_codec_produces() -> None:
    predictions = [{"scores": [[0.1, 0.2]], "ids": [1, 2]}, {"scores": [[0.3, 0.4]], "ids": [3, 4]}]
    schemas = {
        "scores": {
            "type": "array",
            "minItems": 1,
            "maxItems": 1,
            "items": {"type": "array", "items": {"type": "number"}, "minItems": 2, "maxItems": 2},
        },
        "ids": {"type": "array", "items": {"type": "integer"}, "minItems": 2, "maxItems": 2},
    }
    described = model_metadata("t", ["1"], "onnx", [], "tensor", None, schemas)["outputs"]
    produced = predictions_to_outputs(predictions, "tensor", None)
    assert [(o["name"], o["datatype"], o["shape"][1:]) for o in described] == [
        (t.name, t.datatype, t.shape[1:]) for t in produced
    ]


def test_server_metadata() -> None:
    assert server_metadata("1.2.3") == {
        "name": "fastinfer",
        "version": "1.2.3",
        "extensions": ["binary_tensor_data", "model_repository"],
    }


# --------------------------------------------------------------------------------------------
# JSON data holds what its datatype holds, as binary data of the same tensor does

ROUNDED = [0.1, 1 / 3, 16777217, -2.5e-40, 3.4028235e38]  # as a JSON writer prints them


@pytest.mark.parametrize(("datatype", "dtype"), [("FP32", np.float32), ("FP16", np.float16)])
def test_json_float_data_is_rounded_to_its_datatype_as_binary_data_is(
    datatype: str, dtype: Any
) -> None:
    values = [0.1, 1 / 3, 2049, -2.5e-8] if dtype is np.float16 else ROUNDED
    tensor = {"name": "x", "datatype": datatype, "shape": [len(values)], "data": values}
    document = {"inputs": [tensor]}
    from_json = decode(orjson.dumps(document), [field("x", "number")])
    array = np.array(values, dtype=dtype)
    body, header_length = client_body([client_input("x", array, datatype, binary=True)])
    from_binary = decode(body, [field("x", "number")], header_length)
    assert from_json.rows == from_binary.rows
    assert [row["x"] for row in from_json.rows] == array.tolist()
    assert from_json.rows[0]["x"] != 0.1  # the float32 (or float16) nearest 0.1


def test_json_bf16_rounds_to_nearest_even_and_keeps_nulls_and_nesting() -> None:
    data = [[1.00390625, None], [1.005, -3.0]]  # 1 + 2**-8 is halfway: ties to 1.0
    document = {"inputs": [{"name": "x", "datatype": "BF16", "shape": [2, 2], "data": data}]}
    request = decode(orjson.dumps(document), [field("x", "number", shape=[2], nullable=True)])
    assert [row["x"] for row in request.rows] == [[1.0, None], [1.0078125, -3.0]]
    fp64 = {"inputs": [{"name": "x", "datatype": "FP64", "shape": [2], "data": [1, None]}]}
    (first, second) = decode(orjson.dumps(fp64), [field("x", "any", nullable=True)]).rows
    assert type(first["x"]) is float and second["x"] is None  # FP64's 1 is 1.0, as binary


@pytest.mark.parametrize(
    ("datatype", "data", "message"),
    [
        (
            "FP32",
            [1.0, 3.5e38],
            "input 'x', row 1: 3.5e+38 is out of range for FP32 (±3.4028235e+38)",
        ),
        ("FP32", [None, -1e39], "input 'x', row 1: -1e+39 is out of range for FP32"),
        ("FP16", [65520.0, 1.0], "input 'x', row 0: 65520.0 is out of range for FP16 (±65504)"),
        (
            "BF16",
            [3.4e38, 1.0],
            "input 'x', row 0: 3.4e+38 is out of range for BF16 (±3.3895314e+38)",
        ),
    ],
)
def test_json_float_data_its_datatype_cannot_hold_is_a_400(
    datatype: str, data: list[Any], message: str
) -> None:
    document = {"inputs": [{"name": "x", "datatype": datatype, "shape": [2], "data": data}]}
    with pytest.raises(V2Error) as caught:
        decode(orjson.dumps(document), [field("x", "number", nullable=True)])
    assert str(caught.value).startswith(message)


# --------------------------------------------------------------------------------------------
# one [N, F] tensor for an all-numeric model (issue 16, item 5)

NUMERIC_FIELDS = [
    field("x", "number"),
    field("n", "integer"),
    field("maybe", "number", nullable=True),
]
# FP32 values that float64 cannot mistake for their decimal: the float32 rounding must be the
# same per input and in one tensor.
FP32_ROWS = np.array([[0.1, 3, 2.7], [1e-8, -2, float("nan")], [16777217.0, 0, 1 / 3]])


def _nulled(values: np.ndarray) -> list[Any]:
    """JSON data: NaN as null (JSON has no NaN), every value as float64 prints it."""
    return [v if v == v else None for v in values.astype(np.float64).tolist()]


@pytest.mark.parametrize("datatype", ["FP32", "FP64"])
@pytest.mark.parametrize("binary", [False, True], ids=["json", "binary"])
def test_one_matrix_tensor_gives_the_rows_per_input_tensors_give(
    datatype: str, binary: bool
) -> None:
    dtype = np.float32 if datatype == "FP32" else np.float64
    matrix = FP32_ROWS.astype(dtype)
    integers = matrix[:, 1].astype(np.int64)
    if binary:  # exactly what tritonclient sends
        batched_body = client_body([client_input("input-0", matrix, datatype, binary=True)])
        column_body = client_body(
            [
                client_input("x", matrix[:, 0].copy(), datatype, binary=True),
                client_input("n", integers, "INT64", binary=True),
                client_input("maybe", matrix[:, 2].copy(), datatype, binary=True),
            ]
        )
    else:
        rows = [_nulled(row) for row in matrix]
        batched_body = (
            json_request(
                [{"name": "input-0", "datatype": datatype, "shape": [3, 3], "data": rows}]
            ),
            None,
        )
        column_body = (
            json_request(
                [
                    {
                        "name": "x",
                        "datatype": datatype,
                        "shape": [3],
                        "data": _nulled(matrix[:, 0]),
                    },
                    {"name": "n", "datatype": "INT64", "shape": [3], "data": integers.tolist()},
                    {
                        "name": "maybe",
                        "datatype": datatype,
                        "shape": [3],
                        "data": _nulled(matrix[:, 2]),
                    },
                ]
            ),
            None,
        )
    batched = decode(batched_body[0], NUMERIC_FIELDS, batched_body[1]).rows
    per_column = decode(column_body[0], NUMERIC_FIELDS, column_body[1]).rows
    assert batched == per_column
    assert [type(row["n"]) for row in batched] == [int, int, int]
    assert batched[0]["x"] == float(dtype(0.1))  # FP32 data: the float32 nearest 0.1, widened
    assert batched[1]["maybe"] is None  # NaN (or null) in a nullable column: missing
    assert batched[2]["x"] == float(dtype(16777217.0))


def test_one_matrix_tensor_of_integers() -> None:
    rows = decode(
        json_request(
            [{"name": "inputs", "datatype": "INT32", "shape": [2, 3], "data": [1, 2, 3, 4, 5, 6]}]
        ),
        NUMERIC_FIELDS,
    ).rows
    assert rows == [{"x": 1, "n": 2, "maybe": 3}, {"x": 4, "n": 5, "maybe": 6}]


def test_one_matrix_tensor_refusals() -> None:
    def refused(inputs: list[Any], fields: list[InputField] = NUMERIC_FIELDS) -> str:
        with pytest.raises(V2Error) as caught:
            decode(json_request(inputs), fields, max_rows=2)
        return str(caught.value)

    def tensor(shape: list[int], data: list[Any], datatype: str = "FP32") -> dict[str, Any]:
        return {"name": "input-0", "datatype": datatype, "shape": shape, "data": data}

    wrong_width = refused([tensor([1, 2], [1.0, 2.0])])
    assert "[1, 2]" in wrong_width and "[N, 3]" in wrong_width and "x, n, maybe" in wrong_width
    assert "[N, 3]" in refused([tensor([3], [1.0, 2.0, 3.0])])
    assert "takes integers, not 2.5" in refused([tensor([1, 3], [1.0, 2.5, 3.0])])
    assert "must be numeric" in refused([tensor([1, 3], [True, False, True], "BOOL")])
    with pytest.raises(V2TooManyRows):
        decode(json_request([tensor([3, 3], [0.0] * 9)]), NUMERIC_FIELDS, max_rows=2)
    # a model with a non-numeric input takes per-input tensors only
    mixed = [field("x", "number"), field("city", "string")]
    assert "not an input of this model" in refused([tensor([1, 2], [1.0, 2.0])], mixed)
    assert batched_input(mixed) is None
    assert batched_input(NUMERIC_FIELDS) == {
        "name": "input",
        "datatype": "FP64",
        "shape": [-1, 3],
        "columns": ["x", "n", "maybe"],
    }
    # binary data for it is checked against its shape like any tensor's
    body, length = binary_request(
        {
            "inputs": [
                {
                    "name": "input-0",
                    "datatype": "FP32",
                    "shape": [1, 3],
                    "parameters": {"binary_data_size": 8},
                }
            ]
        },
        np.zeros(2, dtype="<f4").tobytes(),
    )
    with pytest.raises(V2Error, match="needs 12 bytes"):
        decode(body, NUMERIC_FIELDS, length)
