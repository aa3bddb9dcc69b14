"""Running the book's plans (:mod:`perceptcoh.engine.plans`) resumably into one results file.

:func:`run_plan` trains what is missing of a :class:`~perceptcoh.engine.plans.Plan`
(finished runs are reused, interrupted ones resumed from their checkpoint), then gathers
every run's metrics, wall time and provenance, with each teacher's SHA-256 and recipe, into
one JSON document (``results/*.json`` for the book, :func:`default_output`);
:func:`aggregate` summarises its runs over seeds.

Every student of a scale has the same data seed, so :func:`run_plan` trains them in passes
of many students (:func:`cohorts`, :func:`perceptcoh.engine.run_cohort`): one augmentation
and one teacher forward per step, shared by every student of the pass.

The scales and plan builders are re-exported here, where the book imports them.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import time
from pathlib import Path
from typing import Sequence

from .checkpoint import MODEL_NAME, RESULTS_NAME, run_differences
from .config import COHORT_FIELDS, TrainConfig, data_seed
from .files import atomic_write_text, file_sha256
from . import plans
from .loop import run_cohort
from .plans import (
    ABLATION_KNOBS,
    COMPARISON_METHODS,
    LONGER_EPOCHS,
    SCALES,
    Plan,
    PlannedRun,
    ablation_plan,
    combined_plan,
    comparison_plan,
    longer_plan,
    sweep_values,
)
from .fair import KNOBS, extensions_for, final_plan, registration, selection_plan
from .files import jsonable
from .progress import progress_bar
from .selection import choose
from .provenance import provenance
from .shipped import shipped_record

__all__ = [*plans.__all__, "run_plan", "cohorts", "default_output", "aggregate",
           "run_fair_selection", "run_fair_final"]


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
    only_pass: int | None = None,
) -> dict:
    """Train every run of ``plan`` that has no results yet, then gather the results.

    Finished runs (``results.json`` present, with the same settings) are reused; an
    interrupted one resumes from its checkpoint. Teachers are trained first, one by one;
    the students that are left are trained in passes of up to ``cohort_size`` students
    (``None``: every student that can share a pass, :func:`cohorts`). With ``time_limit``
    (seconds) no pass starts after it and a running one stops at an epoch boundary: call
    again to go on. ``only_pass`` (1-based) trains only that pass of the plan's passes over
    all its student runs, finished or not (so that the numbering stays put): processes or
    machines can share a plan's passes, and the last call, without it, gathers them. The returned document has ``completed``; when complete it holds
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
        if only_pass is not None:
            passes = cohorts(unique, cohort_size)
            if isinstance(only_pass, bool) or not 1 <= only_pass <= len(passes):
                raise ValueError(f"only_pass must be in 1..{len(passes)} (the plan's passes "
                                 f"of {cohort_size or 'every'} students), got {only_pass!r}")
            mine = {config.output_dir for config in passes[only_pass - 1]}
            waiting = [config for config in waiting if config.output_dir in mine]
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


def run_fair_selection(scale: str, registered: dict, output: str | os.PathLike | None = None,
                       *, root: str | os.PathLike = "runs", time_limit: float | None = None,
                       cohort_size: int | None = None, only_pass: int | None = None,
                       **execution) -> dict:
    """The fair test's selection (:func:`perceptcoh.engine.fair.selection_plan`): train what
    is missing, choose each method's setting on validation scores
    (:func:`perceptcoh.engine.selection.choose`), extend the grid of a method chosen at an
    edge once (:func:`perceptcoh.engine.fair.extensions_for`) and choose again. The document
    is :func:`run_plan`'s with ``registered`` (the committed registration, which must equal
    :func:`perceptcoh.engine.fair.registration` of ``scale``), ``first_choice``,
    ``extensions`` and ``chosen``; ``completed: False`` when ``time_limit`` stopped it.
    ``execution``: TrainConfig fields that only say how the runs are executed
    (``progress`` also shows the plan's bar); ``only_pass`` as in :func:`run_plan` (the
    selection's base grid; the extension, which needs every base run, waits for a call
    without it).

    Raises:
        ValueError: ``registered`` is not what the code would register (the grid, rule or
            margins changed after registration).
    """
    if jsonable(registered.get("registration")) != jsonable(registration(scale)):
        raise ValueError("the registered fair-test plan differs from the one the code runs; "
                         "the registration is fixed before the runs: restore the code or "
                         "register anew before any selection run")
    deadline = None if time_limit is None else time.perf_counter() + time_limit
    knob_order = {method: knob.values for method, knob in KNOBS.items()}

    def selection_round(extensions: dict) -> dict:
        plan = selection_plan(scale, extensions=extensions, root=root, **execution)
        return run_plan(plan, time_limit=_remaining(deadline),
                        progress=execution.get("progress", True), cohort_size=cohort_size,
                        only_pass=only_pass)

    # Round 1: the registered grid.
    document = selection_round({})
    if not document["completed"]:
        return document
    first = chosen = choose(document["runs"], knob_order)
    # Round 2, once: the grid extended for each method chosen at its edge.
    extensions = extensions_for(first)
    if extensions:
        document = selection_round(extensions)
        if not document["completed"]:
            return document
        chosen = choose(document["runs"], knob_order)
    document.update({"registered": registered, "first_choice": first,
                     "extensions": extensions, "chosen": chosen})
    if output is not None:
        atomic_write_text(output, json.dumps(document, indent=1) + "\n")
    return document


def run_fair_final(scale: str, selection: dict, output: str | os.PathLike | None = None, *,
                   root: str | os.PathLike = "runs", time_limit: float | None = None,
                   cohort_size: int | None = None, only_pass: int | None = None,
                   **execution) -> dict:
    """The fair test's final runs (:func:`perceptcoh.engine.fair.final_plan`) at the
    settings ``selection`` (a completed :func:`run_fair_selection` document) chose, with
    its registration and choices copied into the document."""
    if not selection.get("completed") or "chosen" not in selection:
        raise ValueError("the selection document is not complete: run "
                         "'python -m perceptcoh experiment fair-selection' to the end first")
    if jsonable(selection["registered"]["registration"]) != jsonable(registration(scale)):
        raise ValueError("the selection was run under another registration than the code's")
    plan = final_plan(scale, selection["chosen"], root=root, **execution)
    document = run_plan(plan, time_limit=time_limit, progress=execution.get("progress", True),
                        cohort_size=cohort_size, only_pass=only_pass)
    if document["completed"]:
        unscored = [run["output_dir"] for run in document["runs"]
                    if "perception_gap_r1" not in run["metrics"] and not run.get("diverged")]
        if unscored:
            raise ValueError(f"runs without a gap to the teacher (a control trained in a pass "
                             f"without a transfer student: choose a --cohort-size that keeps "
                             f"each seed's runs together): {unscored}")
        document.update({"registered": selection["registered"],
                         "chosen": selection["chosen"],
                         "selection_provenance": selection["provenance"]})
        if output is not None:
            atomic_write_text(output, json.dumps(document, indent=1) + "\n")
    return document


def _remaining(deadline: float | None) -> float | None:
    return None if deadline is None else max(0.0, deadline - time.perf_counter())


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
                          for config in configs], keep_going=True)
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
        # None for a run saved before the degradation check (report.degraded judges the
        # statistics it has).
        "degraded": results.get("degraded"),
        # The epoch and loss at which it diverged (no metrics then); None when it did not.
        "diverged": results.get("diverged"),
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
        # Every learning-curve point of the run (perceptcoh.engine.curves), in order.
        "curve": [point for record in results.get("history", [])
                  for point in record.get("curve", [])],
    }
