"""What an artefact file is: the runtime that reads it, and the kind of model it holds.

`fastinfer init` and a bare `fastinfer serve --model NAME=FILE` ask the same two questions of a
file, and both get their answers here:

- **The runtime** comes from the extension (`RUNTIME_BY_EXTENSION`), and the content must
  agree: the first bytes must be in a format that runtime reads (`detect_runtime`). A pickle
  named `model.onnx` is refused as "not an ONNX model", never handed to a loader that unpickles;
  a LightGBM model named `model.joblib` is refused with the extension it should have.
- **The output kind** comes from the artefact (`open_as`): it is loaded as a classifier, then as
  a regressor, then as a raw tensor model, and the first kind that loads wins. Each runtime
  refuses a kind that does not fit with a TypeError (scikit-learn: no `predict_proba`; XGBoost
  and LightGBM: the objective; ONNX: no [N,K] probability output), and a "classifier" with a
  single class column is taken for a regressor.

`detect_runtime` reads only the first bytes; `open_as` deserialises, so its callers hand it
bytes whose pin they have checked (the registry reads, hashes, then loads the same bytes).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from fastinfer.model.spec import ModelConfigError, OutputSpec
from fastinfer.runtimes import Runtime, create_runtime

HEAD_BYTES = 64  # how much of a file `detect_runtime` needs
KINDS: tuple[str, ...] = ("classifier", "regressor", "tensor")

# Content formats, as the messages name them.
PICKLE = "a Python pickle"
COMPRESSED = "a compressed joblib pickle"
ZIP = "a zip archive"
ONNX = "an ONNX model"
XGBOOST_JSON = "an XGBoost JSON model"
XGBOOST_UBJ = "an XGBoost UBJSON model"
LIGHTGBM = "a LightGBM text model"

_PICKLES = frozenset({PICKLE, COMPRESSED, ZIP})  # joblib pickles; a zip is read by skops
_EXTENSIONS: dict[str, tuple[str, frozenset[str]]] = {
    ".joblib": ("sklearn", _PICKLES),
    ".pkl": ("sklearn", _PICKLES),
    ".pickle": ("sklearn", _PICKLES),
    ".skops": ("sklearn", frozenset({ZIP})),
    ".onnx": ("onnx", frozenset({ONNX})),
    ".json": ("xgboost", frozenset({XGBOOST_JSON})),
    ".ubj": ("xgboost", frozenset({XGBOOST_UBJ})),
    ".txt": ("lightgbm", frozenset({LIGHTGBM})),
    ".lgb": ("lightgbm", frozenset({LIGHTGBM})),
    ".pt": ("torchscript", frozenset({ZIP})),
    ".torchscript": ("torchscript", frozenset({ZIP})),
}
RUNTIME_BY_EXTENSION: dict[str, str] = {ext: runtime for ext, (runtime, _) in _EXTENSIONS.items()}
_FORMATS: dict[str, frozenset[str]] = {  # what each runtime reads, whatever the extension
    "sklearn": _PICKLES,
    "onnx": frozenset({ONNX}),
    "xgboost": frozenset({XGBOOST_JSON, XGBOOST_UBJ}),
    "lightgbm": frozenset({LIGHTGBM}),
    "torchscript": frozenset({ZIP}),
}
_SAVE_HINTS = {
    "sklearn": "save it with joblib.dump(model, 'model.joblib') or "
    "skops.io.dump(model, 'model.skops')",
    "onnx": "export the model to ONNX (skl2onnx, torch.onnx.export, ...)",
    "xgboost": "save the booster with booster.save_model('model.json') (or 'model.ubj')",
    "lightgbm": "save the booster with booster.save_model('model.txt')",
    "torchscript": "save it with torch.jit.save(torch.jit.script(module), 'model.pt')",
}
# Why an unpinned artefact of each runtime is refused (ONNX, XGBoost JSON and skops load
# unpinned: their runtimes' `needs_trust` says so).
UNPINNED_RISKS = {
    "sklearn": "a pickle runs any code it contains",
    "xgboost": "XGBoost's UBJSON parser crashed the process on malformed files",
    "lightgbm": "LightGBM's text parser crashed the process on malformed files",
    "torchscript": "a TorchScript archive holds pickled objects, which run code",
}
# joblib's compressors: zlib, gzip, bz2, xz, lzma, lz4.
_COMPRESSION_MAGIC = (
    b"\x78\x01",
    b"\x78\x5e",
    b"\x78\x9c",
    b"\x78\xda",
    b"\x1f\x8b",
    b"BZh",
    b"\xfd7zXZ\x00",
    b"\x5d\x00\x00",
    b"\x04\x22\x4d\x18",
)
# ModelProto's fields after ir_version (field number, protobuf wire type).
_ONNX_FIELDS = {(2, 2), (3, 2), (4, 2), (5, 0), (6, 2), (7, 2), (8, 2), (14, 2), (20, 2), (25, 2)}
# Runtimes that check the output kind only when started (ONNX: from the session's outputs).
_KIND_AT_START = {"onnx"}


class ArtefactFormatError(ModelConfigError):
    """The file is not in a format its runtime reads (or its runtime cannot be told)."""


class KindError(TypeError):
    """The artefact loads as none of the output kinds tried; `problems` says why for each."""

    def __init__(self, runtime: str, problems: list[str]) -> None:
        self.runtime = runtime
        self.problems = list(dict.fromkeys(problems))
        super().__init__(f"the {runtime} runtime cannot load it " + "; ".join(self.problems))


class UntrustedTypesError(ValueError):
    """A skops file holding types neither skops nor the config trusts (`types`)."""

    def __init__(self, types: list[str]) -> None:
        self.types = types
        listed = ", ".join(types)
        super().__init__(
            f"the skops file holds type(s) that skops does not trust by default: {listed}. "
            "Building them can run their code; if you trust them, list them in model.yaml: "
            f"runtime_options: {{trusted_types: [{listed}]}}"
        )


def content_format(head: bytes) -> str | None:
    """The format the first bytes of a file are in (one of the constants above), or None."""
    if head[:1] == b"\x80":
        return PICKLE  # protocol 2 and later, as joblib and pickle write them
    if head.startswith(b"PK\x03\x04"):
        return ZIP
    if head.startswith((b"tree\n", b"tree\r\n")):
        return LIGHTGBM
    stripped = head.lstrip()
    if stripped[:1] == b"{" and stripped[1:].lstrip()[:1] == b'"':
        return XGBOOST_JSON
    if head[:1] == b"{" and head[1:2] in (b"i", b"U", b"I", b"l", b"L"):
        return XGBOOST_UBJ  # an object whose first key's length has an integer marker
    if _looks_like_onnx(head):
        return ONNX
    if head.startswith(_COMPRESSION_MAGIC):
        return COMPRESSED
    return None


def runtime_for_extension(path: Path) -> str | None:
    """The runtime a file's extension names (None: an extension no runtime claims)."""
    return RUNTIME_BY_EXTENSION.get(path.suffix.lower())


def detect_runtime(path: Path, head: bytes, runtime: str | None = None) -> str:
    """The runtime for the artefact at `path`, whose first bytes are `head`.

    `runtime` (given by the user) or else the extension decides; the content must be in a
    format that runtime reads, and a file named for one format must hold that format.
    """
    suffix = path.suffix.lower()
    entry = _EXTENSIONS.get(suffix)
    if runtime is None:
        if entry is None:
            known = ", ".join(RUNTIME_BY_EXTENSION)
            raise ArtefactFormatError(
                f"{path.name}: cannot tell the runtime from the extension {suffix or '(none)'!r} "
                f"(known extensions: {known})"
            )
        runtime = entry[0]
    if runtime not in _FORMATS:
        return runtime  # python: no artefact format to check
    formats = entry[1] if entry is not None and entry[0] == runtime else _FORMATS[runtime]
    found = content_format(head)
    if found not in formats:
        raise ArtefactFormatError(_mismatch(path, runtime, formats, found))
    return runtime


def _mismatch(path: Path, runtime: str, formats: frozenset[str], found: str | None) -> str:
    expected = " or ".join(sorted(formats))
    if found is None:
        what = "its content is in no format fastinfer reads"
    else:
        what = f"its content is {found}"
        extensions = [ext for ext, (_, held) in _EXTENSIONS.items() if found in held]
        if extensions and not (found == ZIP and runtime in ("sklearn", "torchscript")):
            what += f" (name it {' or '.join(extensions[:2])})"
    refusal = " It was not loaded." if found in (PICKLE, COMPRESSED) else ""
    return (
        f"{path.name} is not {expected} as the {runtime} runtime expects: {what}.{refusal} "
        f"To serve it with the {runtime} runtime, {_SAVE_HINTS[runtime]}."
    )


def _looks_like_onnx(head: bytes) -> bool:
    """A serialised ModelProto: ir_version (field 1, a small varint) first, then another of
    its fields. Protobuf writers emit fields in number order, and every model has ir_version."""
    if head[:1] != b"\x08":
        return False
    version, position = _varint(head, 1)
    if version is None or not 1 <= version <= 255:
        return False
    if position == len(head):
        return True  # the file (or what was read of it) ends here
    tag, _ = _varint(head, position)
    return tag is not None and (tag >> 3, tag & 7) in _ONNX_FIELDS


def _varint(data: bytes, position: int) -> tuple[int | None, int]:
    value = shift = 0
    while position < len(data) and shift < 64:
        byte = data[position]
        position += 1
        value |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return value, position
        shift += 7
    return None, position


def open_as(
    runtime_name: str,
    data: bytes,
    kind: str | None = None,
    *,
    options: dict[str, Any] | None = None,
    directory: Path | None = None,
    start: bool = True,
) -> tuple[str, Runtime]:
    """The artefact loaded as `kind`, or as the first of `KINDS` it loads as (module docstring).

    With `start=False` the runtime returned is loaded but not started (the registry starts it in
    the serving process, after the fork); a runtime that checks its kind only when started is
    started on a copy, which is then dropped. Raises KindError when no kind fits; whatever else
    loading raises is passed on.
    """
    problems: list[str] = []
    probe = start or runtime_name in _KIND_AT_START
    for candidate in [kind] if kind is not None else KINDS:
        try:
            runtime = _opened(runtime_name, candidate, data, options, directory, start=probe)
        except TypeError as exc:  # the runtime's way of saying "not this kind of model"
            problems.append(f"as a {candidate}: {exc}")
            continue
        labels = runtime.output_labels()
        if kind is None and candidate == "classifier" and labels is not None and len(labels) < 2:
            problems.append("as a classifier: it has a single output column")
            continue
        if probe and not start:
            runtime = _opened(runtime_name, candidate, data, options, directory, start=False)
        return candidate, runtime
    raise KindError(runtime_name, problems)


def _opened(
    runtime_name: str,
    kind: str,
    data: bytes,
    options: dict[str, Any] | None,
    directory: Path | None,
    *,
    start: bool,
) -> Runtime:
    runtime = create_runtime(runtime_name, OutputSpec(kind=kind), options, directory=directory)
    runtime.load(data)
    if start:
        runtime.start()
    return runtime
