"""The training engine: teachers, students by feature transfer, evaluation, the book's plans.

    from perceptcoh.engine import TrainConfig, run, run_cohort

    run(TrainConfig(dataset="cifar100", model="resnet20", output_dir="runs/t"))   # a teacher
    run_cohort([TrainConfig(model="resnet8", method=method, data_seed=0,
                            teacher_checkpoint="runs/t/model.pt", output_dir=f"runs/{method}")
                for method in ("pc", "kd", "ce")])                           # 3 in one pass

One module a job: :mod:`~perceptcoh.engine.config` (what identifies a run),
:mod:`~perceptcoh.engine.data` (datasets on the device, augmentation),
:mod:`~perceptcoh.engine.session` (assembly; the :class:`Session` record is
:mod:`~perceptcoh.engine.state`), :mod:`~perceptcoh.engine.loop` (the epoch
loop, read top to bottom), :mod:`~perceptcoh.engine.checkpoint`,
:mod:`~perceptcoh.engine.distributed`, :mod:`~perceptcoh.engine.evaluate` (models and
checkpoints), :mod:`~perceptcoh.engine.feature_metrics` (probes and transfer metrics),
:mod:`~perceptcoh.engine.collapse` (features that no longer tell images apart),
:mod:`~perceptcoh.engine.plans` (the book's scales and plans),
:mod:`~perceptcoh.engine.experiments` (running them), :mod:`~perceptcoh.engine.cost`
(what a plan costs), :mod:`~perceptcoh.engine.fair` and :mod:`~perceptcoh.engine.selection`
(the fair test's plans and its validation-only selection rule),
:mod:`~perceptcoh.engine.curves` (learning curves), :mod:`~perceptcoh.engine.cli`
(``python -m perceptcoh``), and helpers
(:mod:`~perceptcoh.engine.files`, :mod:`~perceptcoh.engine.progress`,
:mod:`~perceptcoh.engine.provenance`, :mod:`~perceptcoh.engine.presets`).

The core of the library (``perceptcoh``'s losses, ranks, metrics and models) needs only
torch and numpy and never imports this package; what the book's chapters call is
:mod:`perceptcoh.book`, which this package never imports.
"""

from .checkpoint import (
    CHECKPOINT_NAME,
    MODEL_NAME,
    RESULTS_NAME,
    CheckpointError,
    load_checkpoint,
    model_from_checkpoint,
    run_differences,
)
from .collapse import CollapseWarning, check_collapse, collapse_reasons, feature_statistics
from .config import (
    COHORT_FIELDS,
    DEFAULT_BETA,
    METHODS,
    PRECISIONS,
    TrainConfig,
    data_seed,
    on_logits,
    recipe,
    recipe_sha256,
    resolve_precision,
    validate,
)
from .evaluate import evaluate_checkpoint
from .loop import (
    NonFiniteLossError,
    run,
    run_cohort,
    train_cohort_epoch,
    train_epoch,
    train_step,
    train_teacher,
    transfer,
)
from .session import Objective, Session, balanced_beta, prepare, prepare_cohort

__all__ = [
    "TrainConfig", "validate", "METHODS", "PRECISIONS", "DEFAULT_BETA", "COHORT_FIELDS",
    "data_seed", "on_logits", "resolve_precision", "recipe", "recipe_sha256",
    "Session", "Objective", "prepare", "prepare_cohort", "balanced_beta",
    "run", "run_cohort", "train_teacher", "transfer", "train_epoch", "train_cohort_epoch",
    "train_step", "NonFiniteLossError",
    "CHECKPOINT_NAME", "MODEL_NAME", "RESULTS_NAME", "CheckpointError", "load_checkpoint",
    "model_from_checkpoint", "run_differences", "evaluate_checkpoint",
    "CollapseWarning", "check_collapse", "collapse_reasons", "feature_statistics",
]
