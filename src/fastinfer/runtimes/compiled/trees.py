"""Fitted scikit-learn trees and tree ensembles as NumPy, bit for bit.

scikit-learn casts the features to float32 before it walks a tree (`validate_data(...,
dtype=np.float32)`), then goes left where `X[i, feature] <= threshold` (a float32 value against
the float64 threshold, compared as doubles) until it reaches a leaf. `Trees` flattens every tree
of a model into one set of node arrays at load, leaves pointing at themselves, and walks all trees
for all rows at once, one depth level per NumPy step, to the same leaves (the comparison made
exactly, in float32: see `_float32_floor`).

What the models make of the leaves, each in scikit-learn's own order and dtype:

- `DecisionTreeClassifier`: `predict_proba` is the leaf's value row (fractions since
  scikit-learn 1.4), `predict` its first maximum;
- `RandomForestClassifier` (sequential, `n_jobs` None or 1): the trees' probability rows added in
  order to zeros, then divided by the number of trees; the label is the first maximum of that;
- `GradientBoostingClassifier` (`log_loss`): the init estimator's raw prediction, then for each
  stage in order `+= learning_rate * leaf value` (as `predict_stages` adds them: a sequential
  `np.cumsum`), then the loss's link (`expit` with `[1 - p, p]`, or sklearn's softmax); the label
  is `raw >= 0` or the first maximum of the raw predictions, as `predict` takes it.

A batch whose float32 features are not all finite is left to the pipeline (it refuses or, for a
tree that handles missing values, routes NaN its own way).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import numpy.typing as npt
from scipy.special import expit

from fastinfer.runtimes.compiled.linear import softmax
from fastinfer.runtimes.compiled.steps import Float64Array, NotCompilable

IntArray = npt.NDArray[np.intp]
Answer = tuple[Float64Array, list[int]]


class Trees:
    """Fitted `sklearn.tree._tree.Tree`s as flat node arrays, walked together.

    `x <= threshold` for a float32 `x` is `x <= t` where `t` is the largest float32 not above
    the float64 threshold, so the walk compares float32 with float32. Where the trees test few
    distinct (feature, threshold) splits (one-hot features: a handful), each row's outcomes are
    computed once per split and each level only looks them up.
    """

    def __init__(self, trees: list[Any], width: int) -> None:
        features, thresholds, children, roots = [], [], [], []
        offset, depth, internal = 0, 0, 0
        for tree in trees:
            count = int(tree.node_count)
            left = np.asarray(tree.children_left, dtype=np.intp)
            right = np.asarray(tree.children_right, dtype=np.intp)
            feature = np.asarray(tree.feature, dtype=np.intp)
            if int(feature.max(initial=-1)) >= width:
                raise NotCompilable(f"a tree reads feature {int(feature.max())} of {width}")
            leaf = left == -1
            own = np.arange(count, dtype=np.intp)
            left = np.where(leaf, own, left) + offset  # a leaf is its own child: rows stay
            right = np.where(leaf, own, right) + offset
            features.append(np.where(leaf, 0, feature))
            thresholds.append(np.where(leaf, 0.0, np.asarray(tree.threshold, dtype=np.float64)))
            children.append(np.stack([left, right], axis=1).reshape(-1))
            roots.append(offset)
            offset += count
            depth = max(depth, int(tree.max_depth))
            internal += int(count - leaf.sum())
        self.count = len(trees)
        self.depth = depth
        self._width = width
        self._feature = np.concatenate(features)
        self._threshold = _float32_floor(np.concatenate(thresholds))
        self._children = np.concatenate(children)
        self._roots = np.asarray(roots, dtype=np.intp)
        splits = np.stack([self._feature.astype(np.float64), self._threshold], axis=1)
        unique, split = np.unique(splits, axis=0, return_inverse=True)
        self._shared = len(unique) <= depth * len(trees)  # the outcomes cost less than a level
        self._split = split.reshape(-1).astype(np.intp)
        self._split_feature = unique[:, 0].astype(np.intp)
        self._split_threshold = unique[:, 1].astype(np.float32)  # already float32 values

    def leaves(self, matrix: Float64Array) -> IntArray | None:
        """Each row's leaf in each tree, as flat node indices of shape (rows, trees); None when
        the float32 features are not all finite (the pipeline answers)."""
        with np.errstate(over="ignore"):
            x = np.ascontiguousarray(matrix, dtype=np.float32)  # as scikit-learn validates it
        if not np.isfinite(x).all():
            return None
        count = x.shape[0]
        node = np.repeat(self._roots[None, :], count, axis=0)
        if self._shared:  # each row's outcome of each distinct split, then lookups
            outcome = np.greater(x[:, self._split_feature], self._split_threshold).reshape(-1)
            base = (np.arange(count, dtype=np.intp) * len(self._split_feature))[:, None]
            for _ in range(self.depth):
                at = np.take(self._split, node)
                at += base
                node *= 2
                node += np.take(outcome, at)  # right where not `x <= threshold`
                node = np.take(self._children, node)
            return node
        flat = x.reshape(-1)
        base = (np.arange(count, dtype=np.intp) * self._width)[:, None]
        for _ in range(self.depth):
            at = np.take(self._feature, node)
            at += base
            right = np.greater(np.take(flat, at), np.take(self._threshold, node))
            node *= 2
            node += right
            node = np.take(self._children, node)
        return node


def _float32_floor(thresholds: Float64Array) -> npt.NDArray[np.float32]:
    """The largest float32 at or below each float64 threshold: for any float32 `x`,
    `x <= threshold` exactly when `x <= _float32_floor(threshold)`."""
    with np.errstate(over="ignore"):
        rounded = thresholds.astype(np.float32)
    above = rounded.astype(np.float64) > thresholds
    return np.where(above, np.nextafter(rounded, np.float32(-np.inf)), rounded)


def _node_values(trees: list[Any], column: int) -> Float64Array:
    """Every node's value (one output, one column of it), flat in `Trees` order."""
    return np.concatenate([np.asarray(t.value[:, 0, column], dtype=np.float64) for t in trees])


def _classes_of(model: Any, width: int) -> int:
    """The model's number of classes, once it is known to read `width` features, one output."""
    if getattr(model, "n_outputs_", 1) != 1:
        raise NotCompilable(f"a {type(model).__name__} with several outputs")
    if int(getattr(model, "n_features_in_", -1)) != width:
        raise NotCompilable(
            f"the model reads {model.n_features_in_} features, the walk found {width}"
        )
    return len(model.classes_)


class DecisionTree:
    """The compiled `DecisionTreeClassifier`."""

    name = "DecisionTreeClassifier"

    def __init__(self, model: Any, width: int) -> None:
        classes = _classes_of(model, width)
        tree = model.tree_
        self._trees = Trees([tree], width)
        value = np.asarray(tree.value, dtype=np.float64)
        self._proba = np.ascontiguousarray(value[:, 0, :classes])  # predict_proba's rows
        self._label = np.argmax(value[:, 0, :], axis=1)  # predict's first maximum, per leaf

    def __call__(self, matrix: Float64Array) -> Answer | None:
        node = self._trees.leaves(matrix)
        if node is None:
            return None
        leaf = node[:, 0]
        return self._proba[leaf], self._label[leaf].tolist()


class RandomForest:
    """The compiled `RandomForestClassifier` / `ExtraTreesClassifier` (one output)."""

    def __init__(self, model: Any, width: int) -> None:
        self.name = type(model).__name__
        classes = _classes_of(model, width)
        if model.n_jobs not in (None, 1):
            raise NotCompilable(f"{self.name}(n_jobs={model.n_jobs}) adds trees in any order")
        trees = [e.tree_ for e in model.estimators_]
        for e in model.estimators_:
            if e.n_classes_ != classes:
                raise NotCompilable(f"a tree of {self.name} that saw fewer classes")
        self._trees = Trees(trees, width)
        self._proba = np.concatenate(
            [np.asarray(t.value[:, 0, :classes], dtype=np.float64) for t in trees]
        )
        self._count = float(len(trees))

    def __call__(self, matrix: Float64Array) -> Answer | None:
        node = self._trees.leaves(matrix)
        if node is None:
            return None
        # (rows, trees, classes); added tree after tree as `_accumulate_prediction` does
        total = np.cumsum(self._proba[node], axis=1)[:, -1, :]
        total /= self._count
        return total, total.argmax(axis=1).tolist()


class GradientBoosting:
    """The compiled `GradientBoostingClassifier` (binary or multiclass, `log_loss`)."""

    name = "GradientBoostingClassifier"

    def __init__(self, model: Any, width: int) -> None:
        classes = _classes_of(model, width)
        loss = type(model._loss).__name__
        if loss not in ("HalfBinomialLoss", "HalfMultinomialLoss"):
            raise NotCompilable(f"GradientBoostingClassifier with {loss}")
        stages = model.estimators_  # (stages, trees per stage)
        per_stage = int(stages.shape[1])
        if per_stage != (1 if classes == 2 else classes):
            raise NotCompilable("GradientBoostingClassifier stages that do not fit its classes")
        init = model.init_
        zero = isinstance(init, str) and init == "zero"
        if not zero and (type(init).__module__ != "sklearn.dummy" or init.strategy != "prior"):
            raise NotCompilable(f"GradientBoostingClassifier(init={type(init).__name__})")
        # The prior's raw prediction is the same for every row: computed once, by sklearn.
        probe = np.zeros((1, width), dtype=np.float32)
        self._init = np.asarray(model._raw_predict_init(probe), dtype=np.float64)[0]
        trees = [stages[i, k].tree_ for i in range(stages.shape[0]) for k in range(per_stage)]
        self._trees = Trees(trees, width)
        scale = float(model.learning_rate)
        # `out[i, k] += scale * value[leaf]`: the products, per node, once.
        self._scaled = scale * _node_values(trees, 0)
        self._stages = int(stages.shape[0])
        self._per_stage = per_stage

    def raw(self, matrix: Float64Array) -> Float64Array | None:
        """The decision function, (rows, trees per stage), or None."""
        node = self._trees.leaves(matrix)
        if node is None:
            return None
        count = node.shape[0]
        terms = np.empty((count, self._stages + 1, self._per_stage), dtype=np.float64)
        terms[:, 0, :] = self._init
        terms[:, 1:, :] = self._scaled[node].reshape(count, self._stages, self._per_stage)
        raw: Float64Array = np.cumsum(terms, axis=1)[:, -1, :]  # stage after stage, in order
        return raw

    def __call__(self, matrix: Float64Array) -> Answer | None:
        raw = self.raw(matrix)
        if raw is None:
            return None
        if self._per_stage == 1:  # HalfBinomialLoss.predict_proba; predict: raw >= 0
            scores = raw.reshape(-1)
            chosen = (scores >= 0).astype(np.intp).tolist()
            proba = np.empty((scores.shape[0], 2), dtype=np.float64)
            proba[:, 1] = expit(scores)
            proba[:, 0] = 1 - proba[:, 1]
            return proba, chosen
        chosen = np.argmax(raw, axis=1).tolist()
        return softmax(np.array(raw)), chosen
