"""Command line: ``python -m perceptcoh {train-teacher,transfer,evaluate,experiment} ...``.

    python -m perceptcoh train-teacher --preset smoke
    python -m perceptcoh transfer --preset smoke --method pc
    python -m perceptcoh evaluate --checkpoint runs/digits/digits_mlp-pc-seed0/model.pt \\
        --teacher-checkpoint runs/smoke/teacher/model.pt
    python -m perceptcoh experiment comparison --scale full --time-limit 540

Every field of :class:`perceptcoh.engine.TrainConfig` is an option of the two training
commands (``model_options`` becomes ``--model-options``, ...), documented by ``--help``.
Values come from, in increasing priority: TrainConfig's defaults, ``--preset``, the command
line. Dict options take ``KEY=VALUE`` pairs (``--loss-options tau=0.05 r=1``; values are
read as JSON when they parse, as strings otherwise) or one JSON object.

Exit status: 0 done; 1 a clear error (message on stderr); 2 bad arguments; 75 stopped by
``--time-limit`` before the last epoch (run the same command with ``--resume`` to go on).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from typing import Sequence

from . import presets

__all__ = ["main", "build_parser"]

EXIT_INCOMPLETE = 75  # EX_TEMPFAIL: stopped by --time-limit, continue with --resume

# The fair test's three steps (perceptcoh.engine.fair), in order.
FAIR_STEPS = ("fair-plan", "fair-selection", "fair-final")
_TRANSFER_ONLY = ("method", "teacher", "teacher_checkpoint", "protocol", "beta",
                  "gradient_ratio", "loss_options", "teacher_probes")


def build_parser() -> argparse.ArgumentParser:
    from ..models import MODELS
    from .config import METHODS, PRECISIONS, PROTOCOLS, SCHEDULES, TrainConfig
    from .data import DATASETS

    parser = argparse.ArgumentParser(
        prog="python -m perceptcoh",
        description="Train teachers, transfer their features to students (perception "
        "coherence and baselines), and evaluate checkpoints.",
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    choices = {
        "dataset": DATASETS, "model": sorted(MODELS), "teacher": sorted(MODELS),
        "method": [m for m in METHODS if m != "ce"], "protocol": PROTOCOLS,
        "schedule": SCHEDULES, "precision": PRECISIONS,
    }
    descriptions = {
        "train-teacher": "Train a model with cross-entropy alone: a teacher, or the student "
        "baseline without transfer.",
        "transfer": "Train a student from a teacher checkpoint with a transfer loss (the book's "
        "two protocols: supervised CE + beta * L, or pure L).",
    }
    for command, description in descriptions.items():
        sub = commands.add_parser(command, help=description, description=description)
        sub.add_argument("--preset", choices=sorted(presets.PRESETS), default=argparse.SUPPRESS,
                         help="start from a named set of options (" + "; ".join(
                             f"{name}: {_preset_summary(name, command)}"
                             for name in sorted(presets.PRESETS)) + ")")
        for field in dataclasses.fields(TrainConfig):
            if command == "train-teacher" and field.name in _TRANSFER_ONLY:
                continue
            _add_field(sub, field, choices.get(field.name),
                       required=command == "transfer" and field.name == "method")
    evaluate = commands.add_parser(
        "evaluate", formatter_class=argparse.ArgumentDefaultsHelpFormatter,
        help="Evaluate a checkpoint: top-1, linear probe, kNN, retrieval mAP, and coherence "
        "with a teacher.",
        description="Evaluate a checkpoint on its dataset's test set: top-1, linear probe "
        "and kNN on frozen features, retrieval mAP, and with --teacher-checkpoint the "
        "perception gap, triplet concordance and kNN agreement with the teacher.",
    )
    evaluate.add_argument("--checkpoint", required=True,
                          help="model.pt (or checkpoint.pt) of a run")
    evaluate.add_argument("--teacher-checkpoint", default=None,
                          help="model.pt (or checkpoint.pt) of a teacher to compare with")
    evaluate.add_argument("--data-root", default=None, help="folder holding the datasets")
    evaluate.add_argument("--device", default="auto", help="'auto', 'cpu', 'cuda' or 'cuda:N'")
    evaluate.add_argument("--batch-size", type=int, default=1024, help="evaluation batch size")
    evaluate.add_argument("--k", type=int, default=20, help="neighbours of the kNN classifier")
    evaluate.add_argument("--triplet-points", type=int, default=1000,
                          help="test points for the O(n^3) triplet concordance")
    evaluate.add_argument("--train-subset", type=_optional(int), default=None,
                          help="fit the probes on the first N images of a seeded permutation")
    evaluate.add_argument("--test-subset", type=_optional(int), default=None,
                          help="evaluate on the first N test images of a seeded permutation")
    evaluate.add_argument("--seed", type=int, default=0, help="seed of the subsets")
    evaluate.add_argument("--output", default=None,
                          help="JSON file to write (default: evaluation.json next to the "
                          "checkpoint)")
    experiment = commands.add_parser(
        "experiment", formatter_class=argparse.ArgumentDefaultsHelpFormatter,
        help="Run the book's CIFAR comparison table or PC ablations (resumable), and save "
        "their results document.",
        description="Train every missing run of the comparison table (CE, KD, FitNet, SP, "
        "CC, RKD, PKT, PC; supervised and pure protocols) or of the PC ablations (tau, batch "
        "size, metric, r, beta), teachers first; finished runs are reused and interrupted "
        "ones resumed. Then gather every run's metrics, wall time and provenance, with the "
        "teachers' SHA-256, into one JSON document.",
    )
    experiment.add_argument("name", choices=["comparison", "ablation", "all", "longer",
                                             *FAIR_STEPS],
                            help="which experiment (all: comparison and ablation, sharing "
                            "passes; longer: the pure protocol trained longer; the fair "
                            "test, in order: fair-plan registers its grid, rule and margins "
                            "(commit the file before the selection), fair-selection chooses "
                            "each method's setting on the validation split, fair-final "
                            "trains the chosen settings from fresh seeds)")
    experiment.add_argument("--scale", choices=["full", "laptop", "cpu"], default="full",
                            help="full: CIFAR-100 on a GPU; laptop: CIFAR-100 on 2 CPU cores "
                            "with the shipped teacher; cpu: a small subset, "
                            "a pipeline check in minutes")
    experiment.add_argument("--pairs", nargs="+", default=None, metavar="TEACHER:STUDENT",
                            help="comparison: teacher-student pairs (default: the scale's)")
    experiment.add_argument("--methods", nargs="+", default=None,
                            help="comparison: methods (default: all, ce included)")
    experiment.add_argument("--seeds", nargs="+", type=int, default=None,
                            help="seeds (default: the scale's for the comparison, 0 for "
                            "the ablations)")
    experiment.add_argument("--root", default="runs", help="folder of the runs")
    experiment.add_argument("--output", default=None, help="results document (default: "
                            "results/cifar100-NAME.json at full scale, "
                            "results/cifar100-laptop-NAME.json at laptop scale, "
                            "ROOT/SCALE/NAME.json otherwise)")
    experiment.add_argument("--data-root", default=None, help="folder holding the datasets")
    experiment.add_argument("--device", default="auto", help="'auto', 'cpu', 'cuda' or 'cuda:N'")
    experiment.add_argument("--time-limit", type=float, default=None,
                            help="seconds; stop at an epoch boundary after it (exit 75) and "
                            "go on with the same command")
    experiment.add_argument("--progress", action=argparse.BooleanOptionalAction, default=True,
                            help="progress bars for the runs and their epochs")
    experiment.add_argument("--pass", dest="only_pass", type=int, default=None,
                            metavar="K", help="train only the K-th pass of the plan's "
                            "passes (numbered over all its student runs, with "
                            "--cohort-size), so that several processes share a plan; a "
                            "last call without it gathers the document")
    experiment.add_argument("--cohort-size", type=_optional(int), default=None,
                            help="most students trained in one pass over the data (default: "
                            "every student that can share it)")
    experiment.add_argument("--dry-run", action="store_true",
                            help="train nothing: print the images, FLOPs and estimated time "
                            "(at rates measured on this device) of what is left to train")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    from .data import CorruptDataError
    from .loop import NonFiniteLossError

    parser = build_parser()
    arguments = vars(parser.parse_args(argv))
    command = arguments.pop("command")
    try:
        if command == "evaluate":
            return _evaluate(arguments)
        if command == "experiment":
            return _experiment(arguments)
        return _train(command, arguments)
    except (ValueError, FileNotFoundError, NonFiniteLossError, CorruptDataError) as error:
        # ValueError covers CheckpointError and every invalid option value.
        print(f"{parser.prog} {command}: error: {error}", file=sys.stderr)
        return 1


def _train(command: str, arguments: dict) -> int:
    from .config import TrainConfig
    from .loop import run

    values: dict = {}
    if "preset" in arguments:
        values.update(presets.preset(arguments.pop("preset"), command))
    values.update(arguments)
    if command == "train-teacher":
        values["method"] = "ce"
    result = run(TrainConfig(**values))
    if not result["completed"]:
        print(f"stopped by the time limit after epoch {result['epoch']} of {result['epochs']}; "
              f"run the same command with --resume to continue ({result['checkpoint']})",
              file=sys.stderr)
        return EXIT_INCOMPLETE
    summary = {"results": str(_results_path(result)), **result["metrics"],
               "images_per_second": result["images_per_second"]}
    print(json.dumps(summary, indent=2))
    return 0


def _evaluate(arguments: dict) -> int:
    from .evaluate import evaluate_checkpoint

    output = arguments.pop("output")
    results = evaluate_checkpoint(arguments.pop("checkpoint"), **arguments, output=output)
    print(json.dumps({"results": results["output"], **results["metrics"]}, indent=2))
    return 0


def _experiment(arguments: dict) -> int:
    from .experiments import default_output, run_plan
    from .plans import ablation_plan, combined_plan, comparison_plan, longer_plan

    name, root = arguments["name"], arguments["root"]
    execution = {"data_root": arguments["data_root"], "device": arguments["device"],
                 "progress": arguments["progress"]}
    if name in FAIR_STEPS:
        if any(arguments[option] is not None for option in ("pairs", "methods", "seeds")):
            raise ValueError("--pairs, --methods and --seeds select comparison runs; the fair "
                             "test's runs are registered in perceptcoh.engine.fair")
        return _fair_experiment(name, arguments, execution)
    selection = {}
    if arguments["seeds"] is not None:
        selection["seeds"] = arguments["seeds"]
    if name == "comparison":
        if arguments["pairs"] is not None:
            selection["pairs"] = [_pair(text) for text in arguments["pairs"]]
        if arguments["methods"] is not None:
            selection["methods"] = arguments["methods"]
        plan = comparison_plan(arguments["scale"], root=root, **selection, **execution)
    elif name == "all":
        if arguments["pairs"] is not None or arguments["methods"] is not None:
            raise ValueError("--pairs and --methods select comparison runs; 'all' runs the "
                             "whole comparison and the ablations")
        plan = combined_plan(arguments["scale"], root=root, **selection, **execution)
    elif name == "longer":
        if arguments["pairs"] is not None or arguments["methods"] is not None:
            raise ValueError("--pairs and --methods select comparison runs; 'longer' runs the "
                             "methods of SCALES[scale]['longer'] on the scale's first pair")
        plan = longer_plan(arguments["scale"], root=root, **selection, **execution)
    else:
        if arguments["pairs"] is not None or arguments["methods"] is not None:
            raise ValueError("--pairs and --methods select comparison runs; the ablations "
                             "run PC on the scale's first pair")
        plan = ablation_plan(arguments["scale"], root=root, **selection, **execution)
    if arguments["dry_run"]:
        return _print_cost(plan, arguments)
    output = arguments["output"] or default_output(plan, root)
    document = run_plan(plan, output, time_limit=arguments["time_limit"],
                        progress=arguments["progress"], cohort_size=arguments["cohort_size"],
                        only_pass=arguments["only_pass"])
    return _report(document, output, arguments["only_pass"])


def _fair_experiment(name: str, arguments: dict, execution: dict) -> int:
    """The fair test's steps: fair-plan, fair-selection, fair-final."""
    from pathlib import Path

    from .experiments import default_output, run_fair_final, run_fair_selection
    from .fair import registration
    from .files import atomic_write_text
    from .plans import Plan
    from .provenance import committed_in, provenance

    scale, root = arguments["scale"], arguments["root"]
    paths = {step: default_output(Plan(step, scale, {}, {}), root) for step in FAIR_STEPS}
    output = Path(arguments["output"] or paths[name])
    if name == "fair-plan":
        document = {"registration": registration(scale), "provenance": provenance()}
        atomic_write_text(output, json.dumps(document, indent=1) + "\n")
        print(f"registered the fair test in {output}: commit it before running "
              f"'python -m perceptcoh experiment fair-selection --scale {scale}'")
        return 0
    options = dict(root=root, time_limit=arguments["time_limit"],
                   cohort_size=arguments["cohort_size"], only_pass=arguments["only_pass"],
                   **execution)
    if name == "fair-selection":
        path = paths["fair-plan"]
        if not path.is_file():
            raise FileNotFoundError(f"no registration at {path}: run 'python -m perceptcoh "
                                    f"experiment fair-plan --scale {scale}' and commit it")
        registered = {**json.loads(path.read_text()), "path": str(path),
                      "committed_in": committed_in(path)}
        if registered["committed_in"] is None and scale != "cpu":
            raise ValueError(f"{path} is not committed as it is: the registration must be "
                             f"committed before the first selection run")
        if arguments["dry_run"]:
            from .fair import selection_plan

            return _print_cost(selection_plan(scale, root=root, **execution), arguments)
        document = run_fair_selection(scale, registered, output, **options)
    else:
        path = paths["fair-selection"]
        if not path.is_file():
            raise FileNotFoundError(f"no selection document at {path}: run 'python -m "
                                    f"perceptcoh experiment fair-selection --scale {scale}'")
        selection = json.loads(path.read_text())
        if arguments["dry_run"]:
            from .fair import final_plan

            return _print_cost(final_plan(scale, selection["chosen"], root=root,
                                          **execution), arguments)
        document = run_fair_final(scale, selection, output, **options)
    return _report(document, output, arguments["only_pass"])


def _print_cost(plan, arguments: dict) -> int:
    from .cost import format_cost, plan_cost

    print(format_cost(plan_cost(plan, device=arguments["device"],
                                cohort_size=arguments["cohort_size"])))
    return 0


def _report(document: dict, output, only_pass: int | None = None) -> int:
    if not document["completed"]:
        if only_pass is not None:
            print(f"pass {only_pass} is done or stopped by the time limit; "
                  f"{len(document['missing'])} runs of the plan are left: run the same "
                  f"command without --pass to go on and gather the document", file=sys.stderr)
        else:
            print(f"stopped by the time limit with {len(document['missing'])} runs left; run "
                  f"the same command again to continue", file=sys.stderr)
        return EXIT_INCOMPLETE
    print(json.dumps({"results": str(output), "runs": len(document["runs"]),
                      "wall_time_seconds": document["wall_time_seconds"]}, indent=2))
    return 0


def _pair(text: str) -> tuple[str, str]:
    teacher, separator, student = text.partition(":")
    if not separator or not teacher or not student:
        raise ValueError(f"--pairs takes TEACHER:STUDENT, got {text!r}")
    return teacher, student


def _results_path(result: dict):
    from pathlib import Path

    from .checkpoint import RESULTS_NAME

    return Path(result["config"]["output_dir"]) / RESULTS_NAME


def _add_field(parser: argparse.ArgumentParser, field: dataclasses.Field, choices,
               required: bool = False) -> None:
    option = "--" + field.name.replace("_", "-")
    kind = str(field.type).replace(" ", "")
    default = field.default_factory() if field.default_factory is not dataclasses.MISSING \
        else field.default
    help_text = field.metadata.get("help", "")
    keywords: dict = {"dest": field.name, "help": help_text}
    if required:
        keywords["required"] = True
    else:
        # Unset options must not override a preset; the help shows TrainConfig's default.
        keywords["default"] = argparse.SUPPRESS
        if default is not None:  # a None default is explained by the help text
            keywords["help"] = f"{help_text} (default: {_show(default)})"
    base = kind.split("|")[0]
    optional = "None" in kind
    if base == "bool":
        keywords["action"] = argparse.BooleanOptionalAction
    elif base == "dict":
        keywords.update(nargs="+", metavar="KEY=VALUE", action=_MappingAction)
    elif base == "tuple":
        keywords.update(nargs="+", type=field.metadata.get("item_type", str))
    else:
        converter = {"int": int, "float": float, "str": str}[base]
        keywords["type"] = _optional(converter) if optional else converter
        if choices is not None:
            keywords["choices"] = list(choices)
            keywords["metavar"] = "{" + ",".join(choices) + "}"
    parser.add_argument(option, **keywords)


class _MappingAction(argparse.Action):
    """Stores ``KEY=VALUE`` pairs (or one JSON object) as a dict."""

    def __call__(self, parser, namespace, values, option_string=None):
        try:
            setattr(namespace, self.dest, parse_mapping(values))
        except ValueError as error:
            parser.error(f"argument {option_string}: {error}")


def _optional(converter):
    def convert(text: str):
        return None if text.lower() == "none" else converter(text)

    convert.__name__ = converter.__name__
    return convert


def _show(value) -> str:
    if isinstance(value, dict):
        return json.dumps(value) if value else "{}"
    if isinstance(value, tuple):
        return " ".join(str(item) for item in value)
    return str(value)


def _preset_summary(name: str, command: str) -> str:
    settings = presets.PRESETS[name].get(command, {})
    keys = ("dataset", "model", "epochs", "batch_size")
    return ", ".join(f"{key}={settings[key]}" for key in keys if key in settings)


def parse_mapping(items: Sequence[str]) -> dict:
    """``["tau=0.05", "r=1"]`` or ``['{"tau": 0.05}']`` -> ``{"tau": 0.05, "r": 1}``."""
    if len(items) == 1 and items[0].lstrip().startswith("{"):
        try:
            value = json.loads(items[0])
        except json.JSONDecodeError as error:
            raise ValueError(f"not a JSON object: {items[0]!r} ({error})") from error
        if not isinstance(value, dict):
            raise ValueError(f"not a JSON object: {items[0]!r}")
        return value
    mapping = {}
    for item in items:
        key, separator, text = item.partition("=")
        if not separator or not key:
            raise ValueError(f"expected KEY=VALUE, got {item!r}")
        try:
            mapping[key] = json.loads(text)
        except json.JSONDecodeError:
            mapping[key] = text
    return mapping
