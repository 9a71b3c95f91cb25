"""Put a scaffolded model directory in place only once it serves: stage, self-test, install.

`fastinfer init` (`scaffold.build`) decides what to write; this module holds what makes the
write safe. The files are staged in a hidden folder beside the destination, loaded exactly as the
server loads them (pinned, self-tested), and only then moved into place, over an existing
directory only with --force. A failure leaves nothing behind.
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from fastinfer.model.spec import CONFIG_FILENAME, ModelConfigError, load_model_directory
from fastinfer.monitoring.reference import REFERENCE_FILENAME
from fastinfer.repository.local import ModelLoadError, load_local
from fastinfer.repository.served import ServedModel
from fastinfer.scaffold.fields import ScaffoldError

PREDICT_BATCH = 1024

__all__ = [
    "PREDICT_BATCH",
    "check_destination",
    "install",
    "load_staged",
    "predict",
    "staging",
]


def load_staged(root: Path) -> ServedModel:
    """`load_local` on the staged files, its failures told as what `init` got wrong."""
    try:
        return load_local(load_model_directory(root))
    except ModelConfigError as exc:
        raise ScaffoldError(f"the written config is not valid: {exc}") from None
    except ModelLoadError as exc:
        raise ScaffoldError(f"the new model directory does not load: {exc.reason}") from None


def predict(model: ServedModel, rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    assert model.schema is not None and model.runtime is not None
    valid = model.schema.validate_rows(rows)
    return model.runtime.predict(valid, model.schema.columns)


def check_destination(destination: Path, *, force: bool) -> None:
    if not destination.exists():
        return
    if not destination.is_dir():
        raise ScaffoldError(f"{destination} exists and is not a directory")
    if any(destination.iterdir()) and not force:
        raise ScaffoldError(
            f"{destination} already exists; pass --force to overwrite it, or choose another "
            "place with --output or --version"
        )


@contextmanager
def staging(destination: Path) -> Iterator[Path]:
    """A fresh folder beside `destination`; removed (with any parents it made) on failure."""
    parent = destination.absolute().parent
    made = [p for p in (parent, *parent.parents) if not p.exists()]
    parent.mkdir(parents=True, exist_ok=True)
    # Hidden, and "~" is no valid version: a server scanning the repository ignores it.
    staging = Path(tempfile.mkdtemp(prefix=f".{destination.name}.init~", dir=parent))
    try:
        yield staging
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        for folder in made:  # deepest first; stop at the first one that is not empty
            try:
                folder.rmdir()
            except OSError:
                break
        raise
    shutil.rmtree(staging, ignore_errors=True)  # emptied, or already moved into place


def install(staging: Path, destination: Path) -> None:
    """Move the staged files into place (over an existing directory only with --force)."""
    if not destination.exists():
        staging.rename(destination)
        return
    if not (staging / REFERENCE_FILENAME).exists():
        (destination / REFERENCE_FILENAME).unlink(missing_ok=True)  # stale: another sample
    # model.yaml last: a server reloading the directory meanwhile sees the old config fail its
    # pin (and keeps the old version serving) rather than a new config with an old artefact.
    for item in sorted(staging.iterdir(), key=lambda p: p.name == CONFIG_FILENAME):
        item.replace(destination / item.name)
