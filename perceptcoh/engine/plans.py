"""The book's CIFAR experiments as plans of training runs: the scales, and the plans built
from them; :mod:`perceptcoh.engine.experiments` runs them.

A :class:`Plan` is the teacher runs and the student runs of one experiment, each a
:class:`perceptcoh.engine.TrainConfig` with its own output folder.

Two experiments, at each scale, and :func:`combined_plan`, both as one plan:

* :func:`comparison_plan`: the comparison table: PC, CRD, KD, PKT, FitNet, CE alone, SP,
  CC and RKD in the supervised protocol (``CE + beta * L``, top-1) and in the
  pure-transfer protocol (``L`` alone; linear probe, kNN and the perception gap
  ``Delta_r`` on the test set), for every teacher-student pair and seed.
* :func:`ablation_plan`: one knob of the PC loss at a time on the main pair: ``tau``, the
  batch size ``B`` (the number of reference points each anchor is ranked against), the
  dissimilarities ``d_f = d_g`` (euclidean or cosine), the exponent ``r``, and the weight
  ``beta`` of the supervised protocol.

:func:`longer_plan` trains the pure-transfer comparison for more epochs.

Scales (:data:`SCALES`): ``full`` is CIFAR-100 on a GPU, the resnet32x4 teacher of the
``full`` preset; ``laptop`` all of CIFAR-100 on two CPU cores, resnet8 students of the
resnet20 teacher shipped with the library (:func:`perceptcoh.engine.shipped.shipped_teacher`,
nothing to train first); ``cpu`` a CIFAR-100 subset with a resnet20 teacher and resnet8
students, a few hundred steps in all, a pipeline check. One recipe holds
for every method: ``beta`` is not tuned per method but measured,
``beta * |grad L| = |grad CE|`` for the initial student (``gradient_ratio=1``), so every
transfer loss starts with a push as strong as the labels'.

Every student of a scale has the same data seed (``data_seed=0``): the seeds of a plan are
initialisation seeds, and all students see the same batches.
"""

from __future__ import annotations

import dataclasses
import inspect
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence

from ..loss import PerceptionCoherenceLoss
from .checkpoint import MODEL_NAME
from .config import TrainConfig
from .presets import preset
from .shipped import shipped_record, shipped_teacher

__all__ = [
    "SCALES",
    "COMPARISON_METHODS",
    "LONGER_EPOCHS",
    "ABLATION_KNOBS",
    "PlannedRun",
    "Plan",
    "comparison_plan",
    "ablation_plan",
    "combined_plan",
    "longer_plan",
    "sweep_values",
    "new_plan",
    "student_run",
]

# PC first, then the baselines strongest in RepDistiller's table for resnet32x4 -> resnet8x4
# (CRD, KD, PKT, FitNet), then the rest: a plan cut short has the comparisons that matter.
COMPARISON_METHODS = ("pc", "crd", "kd", "pkt", "fitnet", "ce", "sp", "cc", "rkd")

# The epochs of the laptop scale's longer point (SCALES["laptop"]["longer"]).
LONGER_EPOCHS = 2

# The recipe of every student of a scale, and its teacher and pairs.
SCALES: dict[str, dict] = {
    "full": {
        "description": "CIFAR-100, 50,000 training and 10,000 test images; students trained "
        "20 epochs at batch 512 (lr 0.1 per 128 images, 1 warm-up epoch, cosine), against "
        "RepDistiller's 240 epochs at batch 64: the comparison's student runs must fit in a "
        "few GPU sessions",
        "teacher": preset("full", "train-teacher"),
        "student": {
            "dataset": "cifar100", "epochs": 20, "batch_size": 512, "lr": 0.1,
            "warmup_epochs": 1, "schedule": "cosine", "eval_every": 0, "triplet_points": 1000,
            "teacher_probes": False, "data_seed": 0,
        },
        "pairs": (("resnet32x4", "resnet8x4"), ("resnet32x4", "shufflenetv2")),
        "seeds": (0, 1, 2),
        "ablations": {"tau": (0.01, 0.03, 0.1, 0.3, 1.0), "batch_size": (128, 256, 512, 1024),
                      "metric": ("euclidean", "cosine"), "r": (1, 2),
                      "gradient_ratio": (0.25, 0.5, 1.0, 2.0, 4.0)},
    },
    "laptop": {
        "description": "CIFAR-100, 50,000 training and 10,000 test images; the shipped "
        "resnet20 teacher (cifar100-resnet20), resnet8 students trained 1 epoch at batch "
        "128 (lr 0.1, cosine) on two CPU cores; linear probe and kNN fitted on 10,000 "
        "training images",
        "teacher": {"shipped": "cifar100-resnet20"},
        "student": {
            "dataset": "cifar100", "epochs": 1, "batch_size": 128, "lr": 0.1,
            "schedule": "cosine", "probe_subset": 10_000, "eval_every": 0,
            "eval_batch_size": 512, "triplet_points": 1000, "teacher_probes": False,
            "data_seed": 0,
        },
        "pairs": (("resnet20", "resnet8"),),
        "seeds": (0, 1, 2),
        # 50,000 training images: 4,096 negatives per image keep CRD's gather cheap on a CPU.
        "loss_options": {"crd": {"nce_k": 4096}},
        "ablations": {"tau": (0.03, 0.1, 1.0), "batch_size": (64, 128, 256),
                      "metric": ("euclidean", "cosine"), "r": (1, 2),
                      "gradient_ratio": (0.5, 1.0, 2.0)},
        # Does the one-epoch order hold with more training? The pure protocol, PC and the
        # strongest baselines, trained 2 epochs: with the table, what fit one session on two cores.
        "longer": {"epochs": LONGER_EPOCHS, "methods": ("pc", "kd", "fitnet", "rkd", "pkt")},
    },
    "cpu": {
        "description": "CIFAR-100 subsets (4,096 training images for the teacher, 2,048 for "
        "each student, 1,000 test images); a resnet20 teacher trained 3 epochs, resnet8 "
        "students trained 1 epoch at batch 64 (32 steps): a pipeline check, not a result",
        "teacher": {
            "dataset": "cifar100", "model": "resnet20", "epochs": 3, "batch_size": 64,
            "lr": 0.1, "schedule": "cosine", "train_subset": 4096, "test_subset": 1000,
            "eval_every": 0, "eval_batch_size": 128, "triplet_points": 300,
            "output_dir": "runs/cpu/teacher-resnet20",
        },
        "student": {
            "dataset": "cifar100", "epochs": 1, "batch_size": 64, "lr": 0.1,
            "schedule": "cosine", "train_subset": 2048, "test_subset": 1000, "eval_every": 0,
            "eval_batch_size": 128, "triplet_points": 300, "teacher_probes": False,
            "data_seed": 0,
        },
        "pairs": (("resnet20", "resnet8"),),
        "seeds": (0,),
        # 2,048 training images: CRD contrasts each with 1,024 negatives, not 16,384.
        "loss_options": {"crd": {"nce_k": 1024}},
        "ablations": {"tau": (0.03, 0.1, 1.0), "batch_size": (32, 64, 128),
                      "metric": ("euclidean", "cosine"), "r": (1, 2),
                      "gradient_ratio": (0.5, 1.0, 2.0)},
        "longer": {"epochs": 2, "methods": ("pc", "kd")},
    },
}

# The knobs of the ablations: the protocol each is measured in, and the run fields that set it.
ABLATION_KNOBS: dict[str, tuple[str, Callable[[object], dict]]] = {
    "tau": ("pure", lambda value: {"loss_options": {"tau": value}}),
    "batch_size": ("pure", lambda value: {"batch_size": value}),
    "metric": ("pure", lambda value: {"loss_options": {"metric_teacher": value,
                                                      "metric_student": value}}),
    "r": ("pure", lambda value: {"loss_options": {"r": value}}),
    "gradient_ratio": ("supervised", lambda value: {"gradient_ratio": value}),
}


@dataclass(frozen=True)
class PlannedRun:
    """One run of a plan: ``key`` names it in the results (pair, method, protocol, seed,
    and for ablations the knob and its value)."""

    key: dict
    config: TrainConfig


@dataclass
class Plan:
    """The runs of one experiment: teachers to train first (by architecture), then students.
    ``shipped`` maps a teacher architecture to the shipped teacher used instead of training
    one (:mod:`perceptcoh.engine.shipped`); ``checkpoints`` maps every teacher architecture
    to the ``model.pt`` its students read (a shipped one checked once, when planned)."""

    name: str
    scale: str
    teachers: dict[str, TrainConfig]
    checkpoints: dict[str, str]
    runs: list[PlannedRun] = field(default_factory=list)
    shipped: dict[str, str] = field(default_factory=dict)


def comparison_plan(
    scale: str = "full",
    *,
    pairs: Sequence[tuple[str, str]] | None = None,
    methods: Sequence[str] = COMPARISON_METHODS,
    seeds: Sequence[int] | None = None,
    root: str | os.PathLike = "runs",
    **execution,
) -> Plan:
    """The comparison table: every method of ``methods`` (``"ce"`` is CE alone, trained
    once per seed) in both protocols, for every (teacher, student) of ``pairs`` and every
    seed; defaults from ``SCALES[scale]``. ``execution``: TrainConfig fields that only say
    how the runs are executed (``data_root``, ``device``, ``progress``, ...)."""
    recipe = _recipe(scale)
    pairs = tuple(recipe["pairs"] if pairs is None else pairs)
    seeds = tuple(recipe["seeds"] if seeds is None else seeds)
    _check_methods(methods)
    plan = new_plan("comparison", scale, pairs, root, execution)
    for teacher_model, student_model in pairs:
        for seed in seeds:
            for method in methods:
                for protocol in ("supervised",) if method == "ce" else ("supervised", "pure"):
                    key = {"pair": f"{teacher_model}->{student_model}", "method": method,
                           "protocol": protocol, "seed": seed}
                    plan.runs.append(student_run(plan, key, teacher_model, student_model, root,
                                                 execution, method=method, protocol=protocol,
                                                 seed=seed))
    return plan


def ablation_plan(
    scale: str = "full",
    *,
    seeds: Sequence[int] = (0,),
    root: str | os.PathLike = "runs",
    **execution,
) -> Plan:
    """One knob of PC at a time on the first pair of ``SCALES[scale]``, the others at the
    comparison's values: ``tau``, batch size (``lr`` scales with it), the dissimilarity
    (both sides), ``r`` (pure protocol), and ``gradient_ratio``, hence ``beta`` (supervised
    protocol; CE alone is its point ``gradient_ratio = 0``). The comparison's own PC run is
    one point of every sweep: it is planned once per protocol and seed and appears under
    every knob's key, and shares its folder with the comparison's run."""
    recipe = _recipe(scale)
    pair = recipe["pairs"][0]
    plan = new_plan("ablation", scale, (pair,), root, execution)
    planned: dict[str, PlannedRun] = {}
    for seed in seeds:
        for knob, values in recipe["ablations"].items():
            protocol, overrides = ABLATION_KNOBS[knob]
            for value in values:
                key = {"pair": f"{pair[0]}->{pair[1]}", "method": "pc", "protocol": protocol,
                       "seed": seed, "knob": knob, "value": value}
                candidate = student_run(plan, key, pair[0], pair[1], root, execution,
                                        method="pc", protocol=protocol, seed=seed,
                                        **overrides(value))
                # The default setting recurs in every sweep: train it once.
                config = planned.setdefault(candidate.config.output_dir, candidate).config
                plan.runs.append(PlannedRun(key, config))
        # beta = 0 is CE alone: the end point of the beta sweep, without PC's cost.
        key = {"pair": f"{pair[0]}->{pair[1]}", "method": "ce", "protocol": "supervised",
               "seed": seed, "knob": "gradient_ratio", "value": 0.0}
        plan.runs.append(student_run(plan, key, pair[0], pair[1], root, execution, method="ce",
                                     protocol="supervised", seed=seed))
    return plan


def sweep_values(knob: str, values: Sequence) -> list:
    """The points an :func:`ablation_plan` sweep of ``knob`` over ``values`` has: the values,
    and ``0.0`` for ``gradient_ratio`` (CE alone, its end point)."""
    return list(values) + ([0.0] if knob == "gradient_ratio" else [])


def combined_plan(
    scale: str = "laptop",
    *,
    seeds: Sequence[int] | None = None,
    ablation_seeds: Sequence[int] = (0,),
    root: str | os.PathLike = "runs",
    **execution,
) -> Plan:
    """The comparison (``seeds``: default the scale's) and the ablations
    (``ablation_seeds``) as one plan, so that every student that can share a pass with
    another does: at the laptop scale the ablations of tau, the metric, r and beta join
    the comparison's pass, and only the batch sizes other than the recipe's need their
    own."""
    comparison = comparison_plan(scale, seeds=seeds, root=root, **execution)
    ablation = ablation_plan(scale, seeds=ablation_seeds, root=root, **execution)
    return dataclasses.replace(comparison, name="all", runs=comparison.runs + ablation.runs)


def longer_plan(
    scale: str = "laptop",
    *,
    seeds: Sequence[int] | None = None,
    root: str | os.PathLike = "runs",
    **execution,
) -> Plan:
    """The pure-transfer comparison trained longer: the methods of
    ``SCALES[scale]["longer"]`` for ``SCALES[scale]["longer"]["epochs"]`` epochs, the rest
    of the recipe (and its schedule, stretched over the epochs) unchanged, on the first pair,
    for every seed (default the scale's). It asks whether the one-epoch order holds when the
    students train longer."""
    recipe = _recipe(scale)
    if "longer" not in recipe:
        raise ValueError(f"scale {scale!r} has no longer point; scales that have one: "
                         f"{', '.join(name for name, r in SCALES.items() if 'longer' in r)}")
    longer = recipe["longer"]
    _check_methods(longer["methods"])
    pair = recipe["pairs"][0]
    seeds = tuple(recipe["seeds"] if seeds is None else seeds)
    plan = new_plan("longer", scale, (pair,), root, execution)
    for seed in seeds:
        for method in longer["methods"]:
            key = {"pair": f"{pair[0]}->{pair[1]}", "method": method, "protocol": "pure",
                   "seed": seed, "epochs": longer["epochs"]}
            plan.runs.append(student_run(plan, key, pair[0], pair[1], root, execution,
                                         method=method, protocol="pure", seed=seed,
                                         epochs=longer["epochs"]))
    return plan


def _recipe(scale: str) -> dict:
    if scale not in SCALES:
        raise ValueError(f"unknown scale {scale!r}; choose one of: {', '.join(SCALES)}")
    return SCALES[scale]


def _check_methods(methods: Sequence[str]) -> None:
    unknown = [m for m in methods if m not in COMPARISON_METHODS]
    if unknown or not methods:
        raise ValueError(f"methods must be a non-empty selection of "
                         f"{', '.join(COMPARISON_METHODS)}, got {list(methods)!r}")


def new_plan(name: str, scale: str, pairs: Sequence[tuple[str, str]], root, execution) -> Plan:
    """An empty plan of ``scale`` for ``pairs``: its teachers (the shipped one, or the runs
    that train them under ``root``), no student runs yet (:func:`student_run` adds them)."""
    recipe = SCALES[scale]["teacher"]
    if not pairs:
        raise ValueError("pairs must name at least one (teacher, student) pair")
    if "shipped" in recipe:
        shipped = recipe["shipped"]
        model = shipped_record(shipped)["model"]["name"]
        wrong = sorted({teacher for teacher, _ in pairs if teacher != model})
        if wrong:
            raise ValueError(f"scale {scale!r} transfers from the shipped {model} teacher "
                             f"({shipped}); pairs name {', '.join(wrong)}")
        return Plan(name, scale, {}, {model: shipped_teacher(shipped)},
                    shipped={model: shipped})
    teachers = {}
    for teacher_model, _ in pairs:
        if teacher_model == recipe["model"]:  # under root as the recipe (or preset) says
            output = Path(root) / Path(recipe["output_dir"]).relative_to("runs")
        else:
            output = Path(root) / scale / f"teacher-{teacher_model}"
        teachers[teacher_model] = TrainConfig(**{**recipe, "model": teacher_model,
                                                 "method": "ce", **execution,
                                                 "output_dir": str(output)})
    checkpoints = {model: str(Path(config.output_dir) / MODEL_NAME)
                   for model, config in teachers.items()}
    return Plan(name, scale, teachers, checkpoints)


def student_run(plan: Plan, key: dict, teacher_model: str, student_model: str, root, execution,
                method: str, protocol: str, seed: int, **overrides) -> PlannedRun:
    """A student run of ``plan`` keyed ``key``: the scale's student recipe with
    ``execution`` and ``overrides`` (TrainConfig fields; ``loss_options`` merged into the
    scale's); ``overrides`` equal to the recipe's values are dropped, so that the same
    setting gets the same config and folder in every plan."""
    recipe = SCALES[plan.scale]["student"]
    values = {**recipe, "model": student_model, "method": method, "protocol": protocol,
              "seed": seed, **execution}
    tags = []
    if method != "ce":
        values.update(teacher=teacher_model, gradient_ratio=1.0,
                      teacher_checkpoint=plan.checkpoints[teacher_model])
    options = {name: value for name, value in overrides.pop("loss_options", {}).items()
               if value != _PC_DEFAULTS.get(name)}
    scale_options = SCALES[plan.scale].get("loss_options", {}).get(method, {})
    if options or scale_options:
        values["loss_options"] = {**scale_options, **options}
        tags += [f"{name}={value}" for name, value in sorted(options.items())]
    for name, value in sorted(overrides.items()):
        if value != values.get(name, getattr(_DEFAULT_CONFIG, name)):
            values[name] = value
            tags.append(f"{name}={value}")
    folder = "-".join([method] + (["pure"] if protocol == "pure" else []) + tags
                      + [f"seed{seed}"])
    output = Path(root) / plan.scale / f"{teacher_model}-{student_model}" / folder
    return PlannedRun(dict(key), TrainConfig(**values, output_dir=str(output)))


def _pc_defaults() -> dict:
    parameters = inspect.signature(PerceptionCoherenceLoss).parameters
    return {name: p.default for name, p in parameters.items()
            if p.default is not inspect.Parameter.empty}


_PC_DEFAULTS = _pc_defaults()
_DEFAULT_CONFIG = TrainConfig()
