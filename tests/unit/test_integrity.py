from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from fastinfer.model.integrity import (
    IntegrityError,
    UnpinnedArtefactError,
    read_pinned,
    sha256_file,
)


def test_pin_is_checked_and_mismatch_names_file_and_both_hashes(tmp_path: Path) -> None:
    artefact = tmp_path / "model.joblib"
    artefact.write_bytes(b"model bytes")
    good = hashlib.sha256(b"model bytes").hexdigest()
    assert sha256_file(artefact) == good
    assert read_pinned(artefact, good, trust_unpinned=False) == b"model bytes"
    wrong = "0" * 64
    with pytest.raises(IntegrityError) as caught:
        read_pinned(artefact, wrong, trust_unpinned=False)
    message = str(caught.value)
    assert str(artefact) in message and wrong in message and good in message


def test_unpinned_needs_opt_in(tmp_path: Path) -> None:
    artefact = tmp_path / "model.joblib"
    artefact.write_bytes(b"x")
    with pytest.raises(UnpinnedArtefactError, match="no sha256 pin"):
        read_pinned(artefact, None, trust_unpinned=False)
    assert read_pinned(artefact, None, trust_unpinned=True) == b"x"
