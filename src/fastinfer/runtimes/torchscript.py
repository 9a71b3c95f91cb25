"""TorchScript modules (`torch.jit.save`), for the optional `torch` extra.

A TorchScript archive carries no feature names, so model.yaml declares the inputs. Rows of
scalar numbers become one float32 matrix [N, F] in field order (what a Linear layer wants);
any tensor field makes it one tensor per field instead, [N, *shape] each, in field order.
"""

from __future__ import annotations

import io
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch

from fastinfer.model.spec import InputField, OutputSpec
from fastinfer.runtimes.base import Prediction, Row, Runtime, whole_number_option
from fastinfer.runtimes.outputs import class_labels, classifier_predictions, index_labels

_DTYPES: dict[str, tuple[Any, Any]] = {  # field type → (numpy dtype, torch dtype)
    "number": (np.float32, torch.float32),
    "integer": (np.int64, torch.int64),
    "boolean": (np.bool_, torch.bool),
}


class TorchScriptRuntime(Runtime):
    name = "torchscript"
    option_keys = ("device", "threads", "logits")

    def __init__(
        self,
        output: OutputSpec,
        options: Mapping[str, Any] | None = None,
        *,
        directory: Path | None = None,
    ) -> None:
        super().__init__(output, options, directory=directory)
        device = self.options.get("device", "cpu")
        try:
            self._device = torch.device(device)
        except (RuntimeError, TypeError) as exc:
            raise ValueError(
                f"runtime option device must be a torch device such as 'cpu' or 'cuda:0' "
                f"(got {device!r}): {exc}"
            ) from None
        threads = whole_number_option(self.options, "threads", default=1, minimum=1)
        self._threads: int = threads
        logits = self.options.get("logits", False)
        if not isinstance(logits, bool):
            raise ValueError(f"runtime option logits must be true or false (got {logits!r})")
        if logits and output.kind != "classifier":
            raise ValueError("runtime option logits applies only to output kind classifier")
        self._logits: bool = logits
        self._data = b""
        self._module: Any = None
        self._started = False
        self._matrix = True
        self._fields: list[tuple[str, Any, Any]] = []  # (name, numpy dtype, torch dtype)
        self._labels: list[str] | None = _declared_labels(output)

    def load(self, data: bytes) -> None:
        """Deserialise on the CPU before the fork; another device waits for `start`.

        CUDA cannot be initialised in a process that later forks its workers.
        """
        if not data:
            raise ValueError("the TorchScript artefact is empty")
        try:
            module = _jit_load(data, "cpu")
        except Exception as exc:
            raise ValueError(
                f"the artefact is not a TorchScript archive (torch.jit.save writes one; a "
                f"pickled nn.Module or a state_dict is not): {type(exc).__name__}: {exc}"
            ) from exc
        module.eval()
        self._module = module
        if self._device.type != "cpu":
            self._data = data  # loaded again with map_location in the serving process

    def start(self) -> None:
        """Set the thread count and move to the device, in the serving process."""
        if self._started:
            return
        torch.set_num_threads(self._threads)
        if self._device.type != "cpu":
            if self._device.type == "cuda" and not torch.cuda.is_available():
                raise RuntimeError(
                    f"runtime option device is {str(self._device)!r} but CUDA is not available "
                    f"(torch {torch.__version__})"
                )
            module = _jit_load(self._data, self._device)
            module.eval()
            self._module, self._data = module, b""
        self._started = True

    def bind_schema(self, fields: list[InputField]) -> None:
        unusable = [f"{f.name} ({f.type})" for f in fields if f.type not in _DTYPES]
        if unusable:
            raise TypeError(
                "TorchScript inputs must be numbers, integers or booleans; declare a numeric "
                f"type for: {', '.join(unusable)}"
            )
        self._matrix = all(f.shape is None for f in fields)
        self._fields = [(f.name, *_DTYPES[f.type]) for f in fields]

    def input_dtypes(self, fields: list[InputField]) -> dict[str, np.dtype[Any]]:
        """Numbers reach the module as float32, in the matrix or in a tensor of their own."""
        return {f.name: np.dtype(np.float32) for f in fields if f.type == "number"}

    def derived_inputs(self) -> list[InputField] | None:
        raise TypeError(
            "a TorchScript module carries no feature names: declare `inputs` in model.yaml "
            "(scalar number fields become one float32 [N, F] matrix in field order)"
        )

    def predict(self, rows: list[Row], columns: list[str]) -> list[Prediction]:
        if self._module is None:
            raise RuntimeError("the torchscript runtime was not loaded: call load() first")
        if not self._fields:
            raise RuntimeError("the torchscript runtime has no schema: call bind_schema() first")
        if not rows:
            return []
        with torch.inference_mode():
            result = self._module(*self._tensors(rows))
            if self.output.kind == "classifier":
                return self._classify(result, len(rows))
            if self.output.kind == "regressor":
                return _regress(result, len(rows))
            return _tensor_rows(result, len(rows))

    def _tensors(self, rows: list[Row]) -> list[Any]:
        if self._matrix:
            names = [name for name, _, _ in self._fields]
            matrix = _array([[row[name] for name in names] for row in rows], np.float32, "a row")
            return [torch.from_numpy(matrix).to(self._device)]
        tensors = []
        for name, np_dtype, torch_dtype in self._fields:
            array = _array([row[name] for row in rows], np_dtype, f"field {name!r}")
            tensors.append(torch.from_numpy(array).to(device=self._device, dtype=torch_dtype))
        return tensors

    def _classify(self, result: Any, count: int) -> list[Prediction]:
        if not isinstance(result, torch.Tensor) or result.dim() != 2:
            raise TypeError(
                "output kind classifier needs the module to return one [N, C] tensor of class "
                f"probabilities; it returned {_describe(result)}"
            )
        _check_rows("the output", result, count)
        # The label is the first largest of the module's own output (logits or probabilities),
        # in its own dtype: torch.argmax returns the first maximal index. It is taken before any
        # softmax, which may round two different logits to one probability.
        chosen: list[int] = result.argmax(dim=1).tolist()
        if self._logits:
            floating = result.dtype in (torch.float32, torch.float64)
            result = torch.softmax(result if floating else result.float(), dim=1)
        probabilities = result.detach().to("cpu", torch.float64).numpy()
        labels = self._labels
        if labels is None or len(labels) != probabilities.shape[1]:
            labels = index_labels(probabilities.shape[1], self.output, "module")
            self._labels = labels
        return classifier_predictions(probabilities, labels, chosen)

    def output_labels(self) -> list[str] | None:
        return self._labels


def _jit_load(data: bytes, device: Any) -> Any:
    """`torch.jit.load` from memory: the bytes are the ones whose sha256 was checked."""
    load: Any = torch.jit.load  # untyped in torch itself; strict mypy refuses the direct call
    return load(io.BytesIO(data), map_location=device)


def _declared_labels(output: OutputSpec) -> list[str] | None:
    """Labels known before the first run: `output.labels` keyed by every index 0..C-1."""
    keys = set(output.labels or {})
    if output.kind != "classifier" or not keys or keys != {str(i) for i in range(len(keys))}:
        return None
    return class_labels(list(range(len(keys))), output)


def _array(values: list[Any], dtype: Any, what: str) -> Any:
    """Values → a contiguous array; a missing (None) number becomes NaN, as pandas reads it."""
    try:
        return np.ascontiguousarray(np.asarray(values, dtype=dtype))
    except TypeError:
        if dtype is np.float32:
            filled = [
                [np.nan if x is None else x for x in v] if isinstance(v, list) else v
                for v in values
            ]
            filled = [np.nan if v is None else v for v in filled]
            try:
                return np.ascontiguousarray(np.asarray(filled, dtype=dtype))
            except TypeError:
                pass
        raise ValueError(
            f"{what} holds a null that a {np.dtype(dtype).name} tensor cannot represent"
        ) from None


def _check_rows(name: str, tensor: Any, count: int) -> None:
    if tensor.dim() == 0 or tensor.shape[0] != count:
        raise ValueError(f"{name} has shape {list(tensor.shape)} for a batch of {count} rows")


def _regress(result: Any, count: int) -> list[Prediction]:
    if not isinstance(result, torch.Tensor):
        raise TypeError(
            f"output kind regressor needs one [N] or [N, 1] tensor; got {_describe(result)}"
        )
    _check_rows("the output", result, count)
    if result.dim() > 2 or (result.dim() == 2 and result.shape[1] != 1):
        raise ValueError(
            f"output kind regressor needs one value per row, [N] or [N, 1]; got shape "
            f"{list(result.shape)}"
        )
    values = result.detach().to("cpu", torch.float64).reshape(-1).tolist()
    return [{"value": value} for value in values]


def _tensor_rows(result: Any, count: int) -> list[Prediction]:
    """Named outputs split per row: a tensor is `output`, a tuple `output_0`.., a dict by key."""
    if isinstance(result, torch.Tensor):
        named = {"output": result}
    elif isinstance(result, tuple | list):
        named = {f"output_{i}": t for i, t in enumerate(result)}
    elif isinstance(result, Mapping):
        named = {str(k): t for k, t in result.items()}
    else:
        raise TypeError(
            f"output kind tensor needs a tensor, a tuple or a dict of tensors; got "
            f"{_describe(result)}"
        )
    columns: dict[str, list[Any]] = {}
    for name, tensor in named.items():
        if not isinstance(tensor, torch.Tensor):
            raise TypeError(f"output {name!r} is {_describe(tensor)}, not a tensor")
        _check_rows(f"output {name!r}", tensor, count)
        columns[name] = tensor.detach().cpu().tolist()  # plain Python numbers, any dtype
    return [{name: values[i] for name, values in columns.items()} for i in range(count)]


def _describe(value: Any) -> str:
    if isinstance(value, torch.Tensor):
        return f"a tensor of shape {list(value.shape)}"
    return f"a {type(value).__name__}"
