"""Many students in one pass: the same weights and metrics as each trained alone."""

from __future__ import annotations

import dataclasses
import json

import pytest
import torch

from perceptcoh.engine import evaluate
from perceptcoh.engine import (
    CHECKPOINT_NAME,
    RESULTS_NAME,
    TrainConfig,
    load_checkpoint,
    prepare_cohort,
    run,
    run_cohort,
)
from digits_runs import tiny


def students(teacher: tuple, root) -> list[TrainConfig]:
    """Three students of the ``teacher`` fixture (tests/conftest.py) that differ in method,
    protocol, initialisation seed and epochs, and share the data seed: FitNet has a
    learnable regressor, KD works on logits."""
    checkpoint = str(teacher[0])
    return [
        tiny(method="pc", teacher_checkpoint=checkpoint, seed=3, data_seed=0,
             output_dir=str(root / "pc")),
        tiny(method="fitnet", protocol="pure", teacher_checkpoint=checkpoint, seed=4,
             data_seed=0, gradient_ratio=1.0, output_dir=str(root / "fitnet")),
        tiny(method="kd", teacher_checkpoint=checkpoint, seed=5, data_seed=0, epochs=3,
             output_dir=str(root / "kd")),
    ]


def comparable(results: dict) -> dict:
    """What a run's results say about the run, without timings, paths and provenance."""
    history = [{k: v for k, v in record.items() if k not in ("seconds", "images_per_second")}
               for record in results["history"]]
    return {"metrics": results["metrics"], "beta": results["beta"], "history": history}


def test_three_students_in_one_pass_equal_each_trained_alone(teacher, tmp_path):
    """Bit for bit on a CPU: every student draws its initialisation from its own seed after
    the teacher is loaded, sees the same batches (the data seed and the epoch decide them),
    and takes its own steps; the teacher's outputs are the same tensors either way."""
    together = run_cohort(students(teacher, tmp_path / "together"))
    alone = [run(config) for config in students(teacher, tmp_path / "alone")]
    for cohort_result, single_result, name in zip(together, alone, ("pc", "fitnet", "kd")):
        assert cohort_result["cohort_size"] == 3 and single_result["cohort_size"] == 1
        assert comparable(cohort_result) == comparable(single_result), name
        cohort_state = load_checkpoint(tmp_path / "together" / name / CHECKPOINT_NAME)
        single_state = load_checkpoint(tmp_path / "alone" / name / CHECKPOINT_NAME)
        for key, value in single_state["model_state"].items():
            assert torch.equal(cohort_state["model_state"][key], value), (name, key)
        for key, value in single_state["loss_state"].items():
            assert torch.equal(cohort_state["loss_state"][key], value), (name, key)
    assert together[2]["epochs_completed"] == 3 and together[0]["epochs_completed"] == 2


def test_a_cohort_resumes_members_at_different_epochs(teacher, tmp_path):
    """One student stopped by the time limit after epoch 1 and one never started: resumed
    together, they end where an uninterrupted pass ends."""
    configs = students(teacher, tmp_path / "split")[:2]
    first = dataclasses.replace(configs[0], time_limit=1e-9)
    assert not run(first)["completed"]
    assert load_checkpoint(tmp_path / "split" / "pc" / CHECKPOINT_NAME)["epoch"] == 1
    resumed = run_cohort([dataclasses.replace(c, resume=True) for c in configs])
    straight = run_cohort(students(teacher, tmp_path / "straight")[:2])
    assert [comparable(r) for r in resumed] == [comparable(r) for r in straight]


def test_a_cohort_writes_each_students_results(teacher, tmp_path):
    configs = students(teacher, tmp_path)
    results = run_cohort(configs)
    for config, result in zip(configs, results):
        written = json.loads((tmp_path / config.output_dir.split("/")[-1] / RESULTS_NAME)
                             .read_text())
        assert written["config"]["method"] == config.method
        assert written["metrics"] == result["metrics"]
        assert "perception_gap_r1" in written["metrics"]


@pytest.mark.parametrize("field, value, message", [
    ("batch_size", 32, "share batch_size"),
    ("data_seed", 1, "share the data seed"),
    ("train_subset", 128, "share train_subset"),
])
def test_students_that_cannot_share_a_pass_are_refused(teacher, tmp_path, field, value,
                                                        message):
    configs = students(teacher, tmp_path)
    configs[1] = dataclasses.replace(configs[1], **{field: value})
    with pytest.raises(ValueError, match=message):
        prepare_cohort(configs)


def test_students_of_a_pass_need_distinct_folders(teacher, tmp_path):
    config = students(teacher, tmp_path)[0]
    with pytest.raises(ValueError, match="distinct output_dir"):
        prepare_cohort([config, dataclasses.replace(config, seed=9)])


def test_data_seed_defaults_to_the_seed(teacher, tmp_path):
    """Without data_seed a run's batches follow its seed, as before data_seed existed."""
    implicit = run(tiny(seed=2, output_dir=str(tmp_path / "implicit")))
    explicit = run(tiny(seed=2, data_seed=2, output_dir=str(tmp_path / "explicit")))
    other = run(tiny(seed=2, data_seed=3, output_dir=str(tmp_path / "other")))
    assert comparable(implicit) == comparable(explicit)
    assert comparable(implicit) != comparable(other)


def test_the_shared_teacher_reference_gives_the_per_student_numbers():
    """evaluate_models with a precomputed teacher side equals computing it per student
    (the gaps up to the order of a float64 sum)."""
    from perceptcoh.engine.data import load_dataset
    from perceptcoh.models import build_model

    test_set = load_dataset("digits", "test").subset(slice(0, 120))
    train_set = load_dataset("digits", "train").subset(slice(0, 200))
    torch.manual_seed(0)
    teacher, student = build_model("digits_cnn", 10).eval(), build_model("digits_mlp", 10).eval()
    common = dict(train_set=train_set, teacher=teacher, max_points=30, seed=4)
    direct = evaluate.evaluate_models(student, test_set, **common)
    reference = evaluate.evaluate_teacher(teacher, test_set, train_set=train_set, seed=4)
    shared = evaluate.evaluate_models(student, test_set, teacher_reference=reference, **common)
    assert direct.keys() == shared.keys()
    for name, value in direct.items():
        assert shared[name] == pytest.approx(value, rel=1e-6, abs=1e-9), name
    with pytest.raises(ValueError, match="seed"):
        evaluate.evaluate_models(student, test_set, teacher_reference=reference,
                                 **{**common, "seed": 5})


def test_the_recipe_names_what_decides_the_results():
    """Execution settings (folder, device, progress, time limit, ...) leave the recipe and
    its hash alone; a field of the recipe changes both."""
    from perceptcoh.engine import recipe, recipe_sha256

    base = tiny(output_dir="a")
    same = dataclasses.replace(base, output_dir="b", device="cpu", progress=True,
                               time_limit=5.0, checkpoint_every=3, eval_batch_size=7)
    assert recipe(same) == recipe(base) and recipe_sha256(same) == recipe_sha256(base)
    for field, value in (("seed", 1), ("data_seed", 4), ("lr", 0.2), ("method", "pc")):
        other = dataclasses.replace(base, **{field: value})
        assert recipe_sha256(other) != recipe_sha256(base), field
    assert "output_dir" not in recipe(base) and "data_seed" in recipe(base)


def test_a_run_saved_before_a_field_existed_still_matches():
    """A checkpoint written before data_seed existed resumes: a missing field reads as its
    default, which is what that run did; a changed one is still a difference."""
    from perceptcoh.engine import recipe, run_differences

    config = tiny(output_dir="a")
    saved = {key: value for key, value in recipe(config).items() if key != "data_seed"}
    assert run_differences({"config": saved}, config) == []
    assert run_differences({"config": saved}, dataclasses.replace(config, data_seed=3)) == [
        "data_seed: saved None, now 3"]



def test_probes_are_fitted_on_a_seeded_part_of_the_training_set(tmp_path):
    from perceptcoh.engine.files import seeded_prefix

    (whole,) = prepare_cohort([tiny(method="ce", output_dir=str(tmp_path / "a"))])
    (part,) = prepare_cohort([tiny(method="ce", probe_subset=64, data_seed=5,
                                   output_dir=str(tmp_path / "b"))])
    assert whole.probe_set is whole.train_set and len(part.train_set) == 256
    chosen = seeded_prefix(256, 64, 5 + 3)
    assert torch.equal(part.probe_set.images, part.train_set.images[chosen])
    assert torch.equal(part.probe_set.labels, part.train_set.labels[chosen])
    with pytest.raises(ValueError, match="probe_subset"):
        prepare_cohort([tiny(method="ce", probe_subset=0, output_dir=str(tmp_path / "c"))])
