"""The book's CIFAR experiments as plans of training runs, run resumably into one results file.

A :class:`Plan` is the teacher runs and the student runs of one experiment, each a
:class:`perceptcoh.engine.TrainConfig` with its own output folder. :func:`run_plan` trains
what is missing (finished runs are reused, interrupted ones resumed from their checkpoint),
then gathers every run's metrics, wall time and provenance, with each teacher's SHA-256
and recipe, into one JSON document (``results/*.json`` for the book).

Two experiments, at each scale, and :func:`combined_plan`, both as one plan:

* :func:`comparison_plan`: the comparison table: PC, CRD, KD, PKT, FitNet, CE alone, SP,
  CC and RKD in the supervised protocol (``CE + beta * L``, top-1) and in the
  pure-transfer protocol (``L`` alone; linear probe, kNN and the perception gap
  ``Delta_r`` on the test set), for every teacher-student pair and seed.
* :func:`ablation_plan`: one knob of the PC loss at a time on the main pair: ``tau``, the
  batch size ``B`` (the number of reference points each anchor is ranked against), the
  dissimilarities ``d_f = d_g`` (euclidean or cosine), the exponent ``r``, and the weight
  ``beta`` of the supervised protocol.

Scales (:data:`SCALES`): ``full`` is CIFAR-100 on a GPU, the resnet32x4 teacher of the
``full`` preset; ``laptop`` all of CIFAR-100 on two CPU cores, resnet8 students of the
resnet20 teacher shipped with the library (:func:`perceptcoh.engine.shipped.shipped_teacher`,
nothing to train first); ``cpu`` a CIFAR-100 subset with a resnet20 teacher and resnet8
students, a few hundred steps in all, a pipeline check. One recipe holds
for every method: ``beta`` is not tuned per method but measured,
``beta * |grad L| = |grad CE|`` for the initial student (``gradient_ratio=1``), so every
transfer loss starts with a push as strong as the labels'.

Every student of a scale has the same data seed (``data_seed=0``): the seeds of a plan are
initialisation seeds, and all students see the same batches. :func:`run_plan` therefore
trains them in passes of many students (:func:`perceptcoh.engine.run_cohort`): one
augmentation and one teacher forward per step, shared by every student of the pass.
"""

from __future__ import annotations

import dataclasses
import inspect
import json
import math
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence

from ..loss import PerceptionCoherenceLoss
from .presets import preset
from .files import atomic_write_text, file_sha256
from .shipped import shipped_record, shipped_teacher
from .progress import progress_bar
from .provenance import provenance
from .checkpoint import MODEL_NAME, RESULTS_NAME, run_differences
from .config import COHORT_FIELDS, TrainConfig, data_seed
from .loop import run_cohort

__all__ = [
    "SCALES",
    "COMPARISON_METHODS",
    "ABLATION_KNOBS",
    "PlannedRun",
    "Plan",
    "comparison_plan",
    "ablation_plan",
    "combined_plan",
    "longer_plan",
    "run_plan",
    "cohorts",
    "default_output",
    "aggregate",
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
        "RepDistiller's 240 epochs at batch 64: 90 student runs must fit in a few GPU "
        "sessions",
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
    plan = _plan("comparison", scale, pairs, root, execution)
    for teacher_model, student_model in pairs:
        for seed in seeds:
            for method in methods:
                for protocol in ("supervised",) if method == "ce" else ("supervised", "pure"):
                    key = {"pair": f"{teacher_model}->{student_model}", "method": method,
                           "protocol": protocol, "seed": seed}
                    plan.runs.append(_student(plan, key, teacher_model, student_model, root,
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
    plan = _plan("ablation", scale, (pair,), root, execution)
    planned: dict[str, PlannedRun] = {}
    for seed in seeds:
        for knob, values in recipe["ablations"].items():
            protocol, overrides = ABLATION_KNOBS[knob]
            for value in values:
                key = {"pair": f"{pair[0]}->{pair[1]}", "method": "pc", "protocol": protocol,
                       "seed": seed, "knob": knob, "value": value}
                candidate = _student(plan, key, pair[0], pair[1], root, execution,
                                     method="pc", protocol=protocol, seed=seed,
                                     **overrides(value))
                # The default setting recurs in every sweep: train it once.
                config = planned.setdefault(candidate.config.output_dir, candidate).config
                plan.runs.append(PlannedRun(key, config))
        # beta = 0 is CE alone: the end point of the beta sweep, without PC's cost.
        key = {"pair": f"{pair[0]}->{pair[1]}", "method": "ce", "protocol": "supervised",
               "seed": seed, "knob": "gradient_ratio", "value": 0.0}
        plan.runs.append(_student(plan, key, pair[0], pair[1], root, execution, method="ce",
                                  protocol="supervised", seed=seed))
    return plan


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
    plan = _plan("longer", scale, (pair,), root, execution)
    for seed in seeds:
        for method in longer["methods"]:
            key = {"pair": f"{pair[0]}->{pair[1]}", "method": method, "protocol": "pure",
                   "seed": seed, "epochs": longer["epochs"]}
            plan.runs.append(_student(plan, key, pair[0], pair[1], root, execution,
                                      method=method, protocol="pure", seed=seed,
                                      epochs=longer["epochs"]))
    return plan


def default_output(plan: Plan, root: str | os.PathLike = "runs") -> Path:
    """Where a plan's results document goes: the book's saved results, committed, at the
    full and laptop scales (``results/cifar100-<name>.json``,
    ``results/cifar100-laptop-<name>.json``), ``<root>/<scale>/<name>.json`` otherwise."""
    if plan.scale == "full":
        return Path("results") / f"cifar100-{plan.name}.json"
    if plan.scale == "laptop":
        return Path("results") / f"cifar100-laptop-{plan.name}.json"
    return Path(root) / plan.scale / f"{plan.name}.json"


def run_plan(
    plan: Plan,
    output: str | os.PathLike | None = None,
    *,
    time_limit: float | None = None,
    progress: bool = True,
    cohort_size: int | None = None,
) -> dict:
    """Train every run of ``plan`` that has no results yet, then gather the results.

    Finished runs (``results.json`` present, with the same settings) are reused; an
    interrupted one resumes from its checkpoint. Teachers are trained first, one by one;
    the students that are left are trained in passes of up to ``cohort_size`` students
    (``None``: every student that can share a pass, :func:`cohorts`). With ``time_limit``
    (seconds) no pass starts after it and a running one stops at an epoch boundary: call
    again to go on. The returned document has ``completed``; when complete it holds
    ``teachers`` (recipe, SHA-256 of ``model.pt``, metrics, collapsed, wall time), ``runs``
    (key, metrics, ``collapsed`` and the ``collapse`` statistics of
    :func:`perceptcoh.engine.collapse.check_collapse`, ``None`` for a run saved before
    that check, beta, wall time, speed, config, provenance of each), ``wall_time_seconds``
    (the teachers' and the passes' wall times, as each measured itself) and this call's
    provenance, and is written to ``output``.

    Raises:
        ValueError: a run folder holds the results of a run with other settings.
    """
    deadline = None if time_limit is None else time.perf_counter() + time_limit
    unique = list({planned.config.output_dir: planned.config for planned in plan.runs}.values())
    finished: dict[str, dict] = {}
    teacher_sha = {plan.checkpoints[model]: shipped_record(name)["sha256"]
                   for model, name in plan.shipped.items()}  # model.pt of a teacher -> SHA-256
    bar = progress_bar(len(plan.teachers) + len(unique), f"{plan.name} ({plan.scale})",
                       "run", progress)
    for model, config in plan.teachers.items():
        results = _reuse(config, None)
        if results is None:
            results = _train([config], deadline)
            results = None if results is None else results[0]
        if results is None:
            break
        finished[config.output_dir] = results
        teacher_sha[plan.checkpoints[model]] = file_sha256(plan.checkpoints[model])
        bar.update(1)
    if len(finished) == len(plan.teachers):
        waiting = []
        for config in unique:
            results = _reuse(config, teacher_sha.get(config.teacher_checkpoint))
            if results is None:
                waiting.append(config)
            else:
                finished[config.output_dir] = results
                bar.update(1)
        for cohort in cohorts(waiting, cohort_size):
            results = _train(cohort, deadline)
            if results is None:
                break
            for config, result in zip(cohort, results):
                finished[config.output_dir] = result
            bar.update(len(cohort))
    bar.close()
    configs = list(plan.teachers.values()) + unique
    missing = [c.output_dir for c in configs if c.output_dir not in finished]
    if missing:
        return {"completed": False, "plan": plan.name, "scale": plan.scale,
                "finished": len(finished), "missing": missing}

    teachers = {
        model: _teacher_record(config, finished[config.output_dir],
                               teacher_sha[plan.checkpoints[model]])
        for model, config in plan.teachers.items()
    }
    teachers.update({model: _shipped_record(name, plan.checkpoints[model])
                     for model, name in plan.shipped.items()})
    runs = [_run_record(planned, finished[planned.config.output_dir]) for planned in plan.runs]
    # A shipped teacher was trained elsewhere: its record has its time, this plan spent none.
    teacher_seconds = sum(finished[config.output_dir]["wall_time_seconds"]
                          for config in plan.teachers.values())
    passes: dict[tuple, float] = {}
    for config in unique:
        results = finished[config.output_dir]
        members = tuple(results.get("cohort") or [config.output_dir])
        passes[members] = max(passes.get(members, 0.0), results["wall_time_seconds"])
    student_seconds = sum(passes.values())
    document = {
        "completed": True,
        "plan": plan.name,
        "scale": plan.scale,
        "description": SCALES[plan.scale]["description"],
        "student_recipe": SCALES[plan.scale]["student"],
        "teachers": teachers,
        "runs": runs,
        "distinct_student_runs": len(unique),
        "student_passes": len(passes),
        "wall_time_seconds": {"teachers": teacher_seconds, "students": student_seconds,
                              "total": teacher_seconds + student_seconds},
        # The plan's device as its runs chose it ("auto": the machine's first GPU if any).
        "provenance": provenance(device=None if unique[0].device == "auto"
                                 else unique[0].device),
    }
    if output is not None:
        atomic_write_text(output, json.dumps(document, indent=1) + "\n")
    return document


def cohorts(configs: Sequence[TrainConfig], size: int | None = None) -> list[list[TrainConfig]]:
    """``configs`` split into groups that can train in one pass (the same
    :data:`perceptcoh.engine.COHORT_FIELDS`, data seed and, for transfer runs, teacher; a
    CE-only student joins the transfer students it matches), in order, each of at most
    ``size`` students (``None``: no limit)."""
    if size is not None and (isinstance(size, bool) or not isinstance(size, int) or size < 1):
        raise ValueError(f"cohort_size must be None or an integer >= 1, got {size!r}")
    buckets: dict[tuple, list[TrainConfig]] = {}
    for config in configs:
        shared = tuple(getattr(config, name) for name in COHORT_FIELDS) + (data_seed(config),)
        buckets.setdefault(shared, []).append(config)
    groups = []
    for members in buckets.values():
        by_teacher: dict[tuple, list[TrainConfig]] = {}
        for config in members:
            if config.method != "ce":
                key = (config.teacher_checkpoint, config.teacher)
                by_teacher.setdefault(key, []).append(config)
        parts = list(by_teacher.values()) or [[]]
        parts[0] = [config for config in members
                    if config.method == "ce" or config in parts[0]]
        groups += parts
    limit = size or max((len(group) for group in groups), default=1)
    return [group[start : start + limit] for group in groups
            for start in range(0, len(group), limit)]


def aggregate(runs: Sequence[dict], by: Sequence[str], metrics: Sequence[str]) -> list[dict]:
    """Mean, sample standard deviation (``nan`` for one run) and count of each of
    ``metrics`` over the runs (``run["key"]``, ``run["metrics"]``) sharing the values of the
    key fields ``by``, in order of first appearance. A metric a run lacks is skipped."""
    groups: dict[tuple, list[dict]] = {}
    for entry in runs:
        groups.setdefault(tuple(entry["key"][name] for name in by), []).append(entry)
    rows = []
    for values, members in groups.items():
        row = dict(zip(by, values))
        for metric in metrics:
            sample = [m["metrics"][metric] for m in members if metric in m["metrics"]]
            if not sample:
                continue
            mean = sum(sample) / len(sample)
            spread = (math.sqrt(sum((x - mean) ** 2 for x in sample) / (len(sample) - 1))
                      if len(sample) > 1 else math.nan)
            row[metric] = {"mean": mean, "std": spread, "n": len(sample)}
        rows.append(row)
    return rows


# Building plans.


def _recipe(scale: str) -> dict:
    if scale not in SCALES:
        raise ValueError(f"unknown scale {scale!r}; choose one of: {', '.join(SCALES)}")
    return SCALES[scale]


def _check_methods(methods: Sequence[str]) -> None:
    unknown = [m for m in methods if m not in COMPARISON_METHODS]
    if unknown or not methods:
        raise ValueError(f"methods must be a non-empty selection of "
                         f"{', '.join(COMPARISON_METHODS)}, got {list(methods)!r}")


def _plan(name: str, scale: str, pairs: Sequence[tuple[str, str]], root, execution) -> Plan:
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


def _student(plan: Plan, key: dict, teacher_model: str, student_model: str, root, execution,
             method: str, protocol: str, seed: int, **overrides) -> PlannedRun:
    """A student run; ``overrides`` equal to the recipe's values are dropped, so that the
    same setting gets the same config and folder in every plan."""
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
        if value != values[name]:
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


# Running.


def _reuse(config: TrainConfig, teacher_sha: str | None) -> dict | None:
    """The results of ``config``'s finished run (from the teacher whose model.pt has
    SHA-256 ``teacher_sha``), or ``None`` when it has none yet."""
    results_path = Path(config.output_dir) / RESULTS_NAME
    if not results_path.exists():
        return None
    results = json.loads(results_path.read_text())
    different = run_differences(results, config, teacher_sha)
    if different:
        raise ValueError(
            f"{results_path} holds a run with other settings ({'; '.join(different)}); "
            f"delete {config.output_dir} or pass another root"
        )
    return results


def _train(configs: list[TrainConfig], deadline: float | None) -> list[dict] | None:
    """Train ``configs`` in one pass, resuming their checkpoints; ``None`` when the deadline
    stops them first."""
    remaining = None
    if deadline is not None:
        remaining = deadline - time.perf_counter()
        if remaining <= 0:
            return None
    results = run_cohort([dataclasses.replace(config, resume=True, time_limit=remaining)
                          for config in configs])
    return results if all(result["completed"] for result in results) else None


def _teacher_record(config: TrainConfig, results: dict, sha256: str) -> dict:
    return {
        "model": config.model,
        "checkpoint": str(Path(config.output_dir) / MODEL_NAME),
        "sha256": sha256,
        "recipe": {name: value for name, value in results["config"].items()
                   if name not in ("output_dir", "resume", "time_limit", "progress")},
        "metrics": results["metrics"],
        "collapsed": results.get("collapsed"),
        "wall_time_seconds": results["wall_time_seconds"],
        "images_per_second": results["images_per_second"],
        "provenance": results["provenance"],
    }


def _shipped_record(name: str, checkpoint: str) -> dict:
    record = shipped_record(name)
    return {
        "model": record["model"]["name"],
        "shipped": name,
        "checkpoint": checkpoint,
        "sha256": record["sha256"],
        "command": record["command"],
        "recipe": record["recipe"],
        "metrics": record["metrics"],
        "wall_time_seconds": record["wall_time_seconds"],
        "images_per_second": record["images_per_second"],
        "provenance": record["run_provenance"],
    }


def _run_record(planned: PlannedRun, results: dict) -> dict:
    return {
        "key": planned.key,
        "metrics": results["metrics"],
        # None for a run saved before the collapse check: unknown.
        "collapsed": results.get("collapsed"),
        "collapse": results.get("collapse"),
        "beta": results["beta"],
        "teacher_sha256": (results.get("teacher") or {}).get("sha256"),
        "output_dir": planned.config.output_dir,
        "cohort": results.get("cohort") or [planned.config.output_dir],
        "wall_time_seconds": results["wall_time_seconds"],
        "images_per_second": results["images_per_second"],
        "images_per_second_after_first_epoch": results["images_per_second_after_first_epoch"],
        "config": results["config"],
        "provenance": results["provenance"],
    }
