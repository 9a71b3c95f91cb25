"""Artefact pinning: a model file is read once, hashed, and only then deserialised."""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from pathlib import Path


class IntegrityError(RuntimeError):
    """An artefact whose bytes are not the ones its config pins."""

    def __init__(self, path: Path, expected: str, actual: str) -> None:
        self.path = path
        self.expected = expected
        self.actual = actual
        super().__init__(
            f"{path}: sha256 mismatch, refusing to load it (expected {expected}, got {actual}); "
            "if the file was rebuilt on purpose, update the sha256 in its model.yaml"
        )


class UnpinnedArtefactError(RuntimeError):
    """A pickle-like artefact without a sha256 pin, and no explicit opt-in to trust it."""


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def read_pinned(
    path: Path,
    expected_sha256: str | None,
    *,
    trust_unpinned: bool,
    needs_trust: Callable[[bytes], bool] = lambda _data: True,
    risk: str = "a pickle runs any code it contains",
) -> bytes:
    """The artefact's bytes, verified against the pin.

    Reading once and loading from memory closes the gap between checking a file and opening it.
    An unpinned artefact loads only if trusted, or if `needs_trust` says loading it runs no code;
    `risk` says, in the refusal, why a file of its format is unsafe to load unverified.
    """
    data = path.read_bytes()
    actual = sha256_bytes(data)
    if expected_sha256 is None:
        if not trust_unpinned and needs_trust(data):
            raise UnpinnedArtefactError(
                f"{path}: no sha256 pin (sha256 of the file is {actual}). Loading an unverified "
                f"file of this format is unsafe ({risk}). Pin it in "
                "model.yaml, pass NAME=PATH#sha256:HEX, or opt in with "
                "--trust-unpinned / FASTINFER_TRUST_UNPINNED_ARTEFACTS=true for files you built."
            )
        return data
    if actual != expected_sha256:
        raise IntegrityError(path, expected_sha256, actual)
    return data
