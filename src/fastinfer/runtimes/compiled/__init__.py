"""A compiled path for common fitted scikit-learn pipelines: the same arithmetic, no DataFrame.

A `Pipeline(ColumnTransformer[...] → LogisticRegression)` costs milliseconds per call whatever
the batch holds: pandas column selection, each transformer's input validation and the final
estimator's checks, twice (predict_proba and predict). The arithmetic itself is a few NumPy
operations. `compile_pipeline` walks the fitted estimators' learned attributes once, at load, and
returns a `CompiledPipeline` that computes from the rows' columns directly:

- `ColumnTransformer` (dense output; columns chosen by name, position, mask or slice; remainder
  and nested `Pipeline`s included) over `OneHotEncoder` (float64, `drop`, `handle_unknown`
  "error", "ignore" and "infrequent_if_exist" when no category is infrequent), `StandardScaler`,
  `MinMaxScaler`, `SimpleImputer` (NaN markers, no indicator) and "passthrough"/"drop";
- then `StandardScaler`/`MinMaxScaler` on the whole matrix, then `LogisticRegression` (binary or
  multinomial). A bare `LogisticRegression` fitted on a frame of numbers compiles too.

The modules, by responsibility:

- `compile.py`: walking the fitted estimators into a `Plan` and a compiled model;
- `steps.py`: the plan's NumPy steps (encoders, scalers, imputers) from rows to the matrix;
- `linear.py`: the compiled `LogisticRegression`;
- `pipeline.py`: `CompiledPipeline`, the two together;
- `check.py`: the load-time guard.

Each operation is the one scikit-learn applies, in its order and dtype. Only scikit-learn's own
classes are compiled (exact class, not subclasses); anything else raises `NotCompilable`, and
the caller keeps the pipeline. Where a batch would make the pipeline fail (an unknown category
with handle_unknown="error", a NaN reaching the model), the compiled path answers None and the
caller asks the pipeline, so the client sees the pipeline's own error.

`check_compiled` is the guard: the runtime enables the path only when it reproduces the
pipeline's answers on the example, the reference and synthetic rows, in several batch
compositions (docs/model-format.md, "Compiled pipelines").
"""

from fastinfer.runtimes.compiled.check import TOLERANCE, CheckResult, check_compiled, check_rows
from fastinfer.runtimes.compiled.compile import compile_pipeline, sklearn_class
from fastinfer.runtimes.compiled.pipeline import CompiledPipeline
from fastinfer.runtimes.compiled.steps import NotCompilable

__all__ = [
    "TOLERANCE",
    "CheckResult",
    "CompiledPipeline",
    "NotCompilable",
    "check_compiled",
    "check_rows",
    "compile_pipeline",
    "sklearn_class",
]
