"""The default's weighted split: exact, interleaved ratios per process, and the roles shown."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from typing import Any, cast

import pytest

from fastinfer.repository.served import ModelVersions, ServedModel, SmoothWeighted
from fastinfer.repository.state import ModelEntry, VersionSource


@dataclass
class FakeVersion:
    version: str
    serving: bool = True


def group(*versions: str, **fields: Any) -> ModelVersions:
    models = ModelVersions("tiny")
    models.versions = {v: cast(ServedModel, FakeVersion(v)) for v in versions}
    for key, value in fields.items():
        setattr(models, key, value)
    models.changes += 1
    return models


@pytest.mark.parametrize(
    "weights",
    [{"1": 90, "2": 10}, {"1": 1, "2": 1}, {"1": 3, "2": 2, "3": 5}, {"a": 7, "b": 13}],
)
def test_every_period_gives_each_version_exactly_its_weight(weights: dict[str, int]) -> None:
    wheel = SmoothWeighted(weights)
    total = sum(weights.values())
    for _ in range(3):
        assert Counter(wheel.pick() for _ in range(total)) == Counter(weights)


def test_weights_are_reduced_and_interleaved() -> None:
    wheel = SmoothWeighted({"1": 90, "2": 10})
    picks = [wheel.pick() for _ in range(100)]
    for start in range(0, 100, 10):  # 9 + 1 in every ten, not 90 then 10
        assert Counter(picks[start : start + 10]) == {"1": 9, "2": 1}
    halves = SmoothWeighted({"1": 50, "2": 50})
    assert [halves.pick() for _ in range(4)] == ["1", "2", "1", "2"]


def test_choose_follows_the_split_and_default_stays_the_heaviest() -> None:
    models = group("1", "2", split={"1": 90, "2": 10})
    answers = Counter(cast(ServedModel, models.choose()).version for _ in range(1000))
    assert answers == {"1": 900, "2": 100}
    assert models.default_version == "1"  # describing the model does not turn the wheel
    assert [models.role(v) for v in ("1", "2")] == ["split", "split"]


def test_a_split_member_that_stops_serving_gives_its_share_to_the_others() -> None:
    models = group("1", "2", "3", split={"1": 1, "2": 1})
    cast(FakeVersion, models.versions["2"]).serving = False
    assert {cast(ServedModel, models.choose()).version for _ in range(10)} == {"1"}
    cast(FakeVersion, models.versions["1"]).serving = False
    assert cast(ServedModel, models.choose()).version == "3"  # the newest that serves


def test_a_staged_version_is_not_the_default_until_promoted() -> None:
    models = group("1", "2", staged=("2",))
    assert models.default_version == "1"
    assert cast(ServedModel, models.choose()).version == "1"
    assert [models.role(v) for v in ("1", "2")] == ["default", "staged"]
    only_staged = group("2", staged=("2",))
    assert only_staged.default_version == "2"  # nothing else answers


def test_setting_the_default_unstages_the_versions_chosen() -> None:
    source = VersionSource(path="/x")
    entry = ModelEntry(versions={"1": source, "2": source, "3": source}, staged=("2", "3"))
    split = entry.defaulted(None, {"1": 90, "2": 10})
    assert (split.pinned, split.split, split.staged) == (None, {"1": 90, "2": 10}, ("3",))
    promoted = split.defaulted("3")
    assert (promoted.pinned, promoted.split, promoted.staged) == ("3", None, ())
    assert entry.defaulted(None, {"2": 5}).pinned == "2"  # a one-version split is a pin
    kept = split.kept({"2": source})
    assert (kept.split, kept.staged) == ({"2": 10}, ())
