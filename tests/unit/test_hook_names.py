"""A hook named wrongly fails the load with a message that says which way it is wrong."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from fastinfer.model.hooks import HookImportError, load_hooks


@pytest.fixture
def hook_module(tmp_path: Path) -> Iterator[None]:
    (tmp_path / "fi_hooks_named.py").write_text(
        "async def pre(rows, context):\n    return rows\n\n\ndef plain(rows, context):\n    pass\n"
    )
    (tmp_path / "fi_hooks_broken.py").write_text("import os\n\nos.no_such_thing\n")
    sys.path.insert(0, str(tmp_path))
    yield
    sys.path.remove(str(tmp_path))
    for name in ("fi_hooks_named", "fi_hooks_broken"):
        sys.modules.pop(name, None)


def test_a_good_name_gives_the_function(hook_module: None) -> None:
    hooks = load_hooks(["fi_hooks_named:pre"], [], 100)
    assert [path for path, _ in hooks.pre] == ["fi_hooks_named:pre"]


@pytest.mark.parametrize(
    ("path", "message"),
    [
        ("fi_hooks_named", "expected 'package.module:function'"),
        ("fi_hooks_named:", "expected 'package.module:function'"),
        ("fi-hooks:pre", "expected 'package.module:function'"),
        ("fi_hooks_missing:pre", "cannot import 'fi_hooks_missing': No module named"),
        ("fi_hooks_named:post", "'fi_hooks_named' has no 'post'"),
        ("fi_hooks_named:plain", "must be an async function"),
    ],
)
def test_a_wrong_name_says_what_is_wrong(hook_module: None, path: str, message: str) -> None:
    with pytest.raises(HookImportError, match=message):
        load_hooks([path], [], 100)


def test_a_module_that_fails_to_import_raises_its_own_error(hook_module: None) -> None:
    with pytest.raises(AttributeError, match="no_such_thing"):
        load_hooks([], ["fi_hooks_broken:post"], 100)
