"""The training engine on digits with tiny models: every loss, resume, errors, DDP."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import socket

import pytest
import torch
import torch.nn.functional as F

from perceptcoh import LOSSES
from perceptcoh.engine.data import load_dataset, normalize
from perceptcoh.engine import (
    CHECKPOINT_NAME,
    MODEL_NAME,
    RESULTS_NAME,
    CheckpointError,
    NonFiniteLossError,
    balanced_beta,
    load_checkpoint,
    prepare,
    run,
    train_epoch,
    train_step,
    train_teacher,
    transfer,
    validate,
)
from perceptcoh.engine.session import _lr_factor
from digits_runs import tiny
from distributed_workers import train_worker


def test_teacher_training_writes_checkpoint_and_results(teacher):
    checkpoint, results = teacher
    written = json.loads((checkpoint.parent / RESULTS_NAME).read_text())
    assert written == json.loads(json.dumps(results))
    assert written["completed"] and written["epochs_completed"] == 2
    assert written["config"]["model"] == "digits_cnn" and written["config"]["method"] == "ce"
    assert {"git_commit", "device", "torch"} <= set(written["provenance"])
    assert written["metrics"]["top1"] > 0.5  # 10 classes: chance is 0.1
    assert written["history"][1]["loss"] < written["history"][0]["loss"]
    assert written["images_per_second"] > 0 and written["wall_time_seconds"] > 0
    assert written["teacher"] is None
    state = load_checkpoint(checkpoint)
    assert state["epoch"] == 2 and state["model"]["name"] == "digits_cnn"
    # The finished model alone: the same weights, without what resuming needs.
    model = load_checkpoint(checkpoint.parent / MODEL_NAME)
    assert "optimizer" not in model and model["epoch"] == 2
    assert all(torch.equal(model["model_state"][k], v) for k, v in state["model_state"].items())
    assert written["model"] == str(checkpoint.parent / MODEL_NAME)


@pytest.mark.parametrize("protocol", ["supervised", "pure"])
@pytest.mark.parametrize("method", sorted(LOSSES))
def test_transfer_steps_with_every_loss(teacher, method, protocol):
    # CRD's negatives per sample are sized to the 256 training images (16,384 by default).
    options = {"nce_k": 64} if method == "crd" else {}
    config = tiny(method=method, protocol=protocol, beta=1.0, loss_options=options,
                  teacher_checkpoint=str(teacher[0]), output_dir="unused")
    session = prepare(config)
    student_before = [p.detach().clone() for p in session.student.parameters()]
    loss_before = [p.detach().clone() for p in session.transfer_loss.parameters()]
    losses = [train_epoch(session, epoch)["loss"] for epoch in range(3)]
    assert all(math.isfinite(loss) for loss in losses), losses
    if method != "crd":  # CRD's loss rises while its memory bank fills: tests/test_crd.py
        assert losses[-1] < losses[0] * 1.05, losses  # decreases (up to noise over 12 steps)
    changed = [not torch.equal(a, b) for a, b in zip(student_before, session.student.parameters())]
    assert any(changed)
    # Learnable parts of the loss (FitNet's regressor, CC's projection) train with the student.
    for before, after in zip(loss_before, session.transfer_loss.parameters()):
        assert not torch.equal(before, after)
    # The teacher stays frozen.
    assert not session.teacher.training
    assert not any(p.requires_grad for p in session.teacher.parameters())


def test_transfer_run_end_to_end(teacher, tmp_path):
    checkpoint, teacher_results = teacher
    results = transfer(tiny(method="pc", teacher_checkpoint=str(checkpoint),
                            output_dir=str(tmp_path), eval_every=0))
    written = json.loads((tmp_path / RESULTS_NAME).read_text())
    assert written["metrics"] == results["metrics"]
    sha256 = hashlib.sha256(checkpoint.read_bytes()).hexdigest()
    assert written["teacher"]["sha256"] == sha256
    assert written["teacher"]["model"] == "digits_cnn"
    assert written["beta"] == 1.0  # DEFAULT_BETA["pc"]
    metrics = written["metrics"]
    # The transfer run scores the teacher it loaded on the same 60 test images, with the same
    # weights, batches and memory format as the teacher's own run scored itself; on a CPU
    # that forward pass is deterministic, so the numbers are equal, not merely close. (The
    # old tolerance, 0.1, let 6 of the 60 images change their answer.)
    assert metrics["teacher_top1"] == teacher_results["metrics"]["top1"]
    assert metrics["teacher_retrieval_map"] == teacher_results["metrics"]["retrieval_map"]
    for name in ("top1", "linear_probe_top1", "knn_top1", "retrieval_map", "perception_gap_r1",
                 "perception_gap_r2", "triplet_concordance", "knn_agreement"):
        assert math.isfinite(metrics[name]), name
    assert metrics["triplet_points"] == 20 and metrics["gap_points"] == 60
    assert "test_top1" not in written["history"][0] and "test_top1" in written["history"][1]
    assert {"git_commit", "device", "torch"} <= set(written["provenance"])


def gradient_norm(loss, parameters):
    gradients = torch.autograd.grad(loss, parameters, retain_graph=True, allow_unused=True)
    return torch.cat([g.flatten() for g in gradients if g is not None]).norm().item()


@pytest.mark.parametrize("method", ["pc", "fitnet", "kd"])
def test_balanced_beta_equalises_the_gradient_norms_and_trains_nothing(teacher, method):
    session = prepare(tiny(method=method, teacher_checkpoint=str(teacher[0]), output_dir="x"))
    images, labels = session.train_set.images[:64], session.train_set.labels[:64]
    inputs = normalize(images, *session.normalisation)
    before = {k: v.clone() for k, v in session.student.state_dict().items()}
    beta = balanced_beta(session.student, session.teacher, session.transfer_loss, inputs,
                         labels, on_logits=method == "kd")
    after = session.student.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)  # BatchNorm buffers too
    # The reference: the two gradient norms, by hand, on a copy in train mode.
    student = session.student.train()
    teacher_features, teacher_logits = session.teacher(inputs)
    features, logits = student(inputs)
    term = session.transfer_loss(*((logits, teacher_logits) if method == "kd"
                                   else (features, teacher_features)))
    parameters = list(student.parameters())
    ce_norm = gradient_norm(F.cross_entropy(logits, labels), parameters)
    assert beta * gradient_norm(term, parameters) == pytest.approx(ce_norm, rel=1e-4)
    student.load_state_dict(before)


@pytest.mark.parametrize("protocol", ["supervised", "pure"])
def test_balanced_runs_weight_the_loss_by_the_measured_beta_and_resume_with_it(
        teacher, tmp_path, protocol):
    fields = dict(method="pc", protocol=protocol, gradient_ratio=1.0,
                  teacher_checkpoint=str(teacher[0]), teacher_probes=False)
    session = prepare(tiny(**fields, output_dir="x"))
    first = session.train_set.images[:3]  # any batch: the objective's weighting
    inputs = normalize(first, *session.normalisation)
    labels = session.train_set.labels[:3]
    with torch.no_grad():
        teacher_features, _ = session.teacher(inputs)
        loss, logits = session.objective(inputs, labels, teacher_features)
        features, _ = session.student(inputs)
        term = session.transfer_loss(features, teacher_features)
    expected = session.beta * term
    if protocol == "supervised":
        expected = expected + F.cross_entropy(logits, labels)
    assert session.beta != 1.0 and float(loss) == pytest.approx(float(expected), rel=1e-5)
    uninterrupted = run(tiny(**fields, output_dir=str(tmp_path / "a")))
    assert uninterrupted["beta"] == pytest.approx(session.beta)
    assert "teacher_top1" not in uninterrupted["metrics"]
    assert "perception_gap_r1" in uninterrupted["metrics"]
    run(tiny(**fields, output_dir=str(tmp_path / "b"), time_limit=0))
    resumed = run(tiny(**fields, output_dir=str(tmp_path / "b"), resume=True))
    assert resumed["beta"] == uninterrupted["beta"]
    assert resumed["metrics"] == uninterrupted["metrics"]


def test_gradient_ratio_scales_beta_and_excludes_beta(teacher):
    checkpoint = str(teacher[0])
    one = prepare(tiny(method="pc", gradient_ratio=1.0, teacher_checkpoint=checkpoint)).beta
    three = prepare(tiny(method="pc", gradient_ratio=3.0, teacher_checkpoint=checkpoint)).beta
    assert three == pytest.approx(3 * one, rel=1e-6)
    with pytest.raises(ValueError, match="beta or gradient_ratio"):
        validate(tiny(method="pc", beta=2.0, gradient_ratio=1.0, teacher_checkpoint=checkpoint))
    with pytest.raises(ValueError, match="gradient_ratio must be"):
        validate(tiny(method="pc", gradient_ratio=-1.0, teacher_checkpoint=checkpoint))


def checkpoint_tensors(path):
    state = load_checkpoint(path)
    return state, {**{f"model.{k}": v for k, v in state["model_state"].items()},
                   **{f"loss.{k}": v for k, v in state["loss_state"].items()}}


@pytest.mark.parametrize("method", ["ce", "fitnet"])
def test_resume_after_interruption_reproduces_the_uninterrupted_run(teacher, tmp_path, method):
    fields = dict(method=method, teacher_checkpoint=None if method == "ce" else str(teacher[0]),
                  beta=1.0, eval_every=1)
    uninterrupted = run(tiny(**fields, output_dir=str(tmp_path / "a")))
    # time_limit=0 stops after the first epoch, as a kill after its checkpoint would.
    first = run(tiny(**fields, output_dir=str(tmp_path / "b"), time_limit=0))
    assert not first["completed"] and first["epoch"] == 1
    assert not (tmp_path / "b" / RESULTS_NAME).exists()
    resumed = run(tiny(**fields, output_dir=str(tmp_path / "b"), resume=True))
    state_a, tensors_a = checkpoint_tensors(tmp_path / "a" / CHECKPOINT_NAME)
    state_b, tensors_b = checkpoint_tensors(tmp_path / "b" / CHECKPOINT_NAME)
    assert tensors_a.keys() == tensors_b.keys() and len(tensors_a) > 0
    for name in tensors_a:
        assert torch.equal(tensors_a[name], tensors_b[name]), name
    momenta_a = [s["momentum_buffer"] for s in state_a["optimizer"]["state"].values()]
    momenta_b = [s["momentum_buffer"] for s in state_b["optimizer"]["state"].values()]
    assert all(torch.equal(a, b) for a, b in zip(momenta_a, momenta_b))
    assert [h["loss"] for h in uninterrupted["history"]] == [h["loss"] for h in resumed["history"]]
    assert resumed["metrics"] == uninterrupted["metrics"]


@pytest.mark.parametrize("every, time_limit, saved", [(1, None, [1, 2, 3]), (2, None, [2, 3]),
                                                      (0, None, [3]), (0, 0, [1])])
def test_checkpoint_interval(tmp_path, monkeypatch, every, time_limit, saved):
    import perceptcoh.engine.members as engine

    written = []
    save = engine.save_checkpoint

    def recording(session, path, epoch, *rest, **options):
        if path.name == CHECKPOINT_NAME:
            written.append(epoch)
        return save(session, path, epoch, *rest, **options)

    monkeypatch.setattr(engine, "save_checkpoint", recording)
    result = run(tiny(epochs=3, checkpoint_every=every, time_limit=time_limit, output_dir=str(tmp_path)))
    assert written == saved
    assert result["completed"] == (time_limit is None)
    assert load_checkpoint(tmp_path / CHECKPOINT_NAME)["epoch"] == saved[-1]


def test_checkpoint_interval_must_be_a_count():
    with pytest.raises(ValueError, match="checkpoint_every"):
        run(tiny(checkpoint_every=-1))


def test_corrupt_checkpoint_gives_a_clear_error(teacher, tmp_path):
    checkpoint = tmp_path / CHECKPOINT_NAME
    checkpoint.write_bytes(b"not a checkpoint at all")
    with pytest.raises(CheckpointError, match=str(checkpoint)):
        run(tiny(output_dir=str(tmp_path), resume=True))
    # Truncated: half of a real checkpoint.
    data = teacher[0].read_bytes()
    checkpoint.write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="corrupt"):
        load_checkpoint(checkpoint)
    # A corrupt teacher is named too.
    with pytest.raises(CheckpointError, match=str(checkpoint)):
        prepare(tiny(method="pc", teacher_checkpoint=str(checkpoint), output_dir="unused"))
    torch.save({"something": 1}, checkpoint)
    with pytest.raises(CheckpointError, match="not a perceptcoh checkpoint"):
        load_checkpoint(checkpoint)
    with pytest.raises(FileNotFoundError, match="missing.pt"):
        load_checkpoint(tmp_path / "missing.pt")


def test_resume_refuses_a_checkpoint_from_another_teacher(teacher, tmp_path):
    other = tmp_path / "other-teacher"
    train_teacher(tiny(model="digits_cnn", epochs=1, seed=5, output_dir=str(other)))
    fields = dict(method="pc", beta=1.0, output_dir=str(tmp_path / "student"))
    run(tiny(**fields, teacher_checkpoint=str(teacher[0]), time_limit=0))
    with pytest.raises(CheckpointError, match="another teacher"):
        run(tiny(**fields, teacher_checkpoint=str(other / MODEL_NAME), resume=True))
    # The same teacher under another path is the same teacher.
    copy = tmp_path / "copy.pt"
    copy.write_bytes(teacher[0].read_bytes())
    assert run(tiny(**fields, teacher_checkpoint=str(copy), resume=True))["completed"]


def test_resume_refuses_a_checkpoint_of_another_run(tmp_path):
    run(tiny(epochs=1, train_subset=128, output_dir=str(tmp_path), triplet_points=5))
    with pytest.raises(CheckpointError, match=r"lr: saved 0\.1, now 0\.2"):
        run(tiny(epochs=1, train_subset=128, output_dir=str(tmp_path), lr=0.2, resume=True))
    with pytest.raises(CheckpointError, match="already exists"):
        run(tiny(epochs=1, train_subset=128, output_dir=str(tmp_path)))


def test_teacher_checkpoint_must_fit(teacher):
    with pytest.raises(ValueError, match="holds a digits_cnn"):
        prepare(tiny(method="pc", teacher="digits_mlp", teacher_checkpoint=str(teacher[0])))
    with pytest.raises(ValueError, match="teacher_checkpoint"):
        prepare(tiny(method="pc"))


@pytest.mark.parametrize("field, value, message", [
    ("method", "magic", "unknown method 'magic'"),
    ("model", "resnet9000", "unknown model 'resnet9000'"),
    ("dataset", "imagenet", "unknown dataset 'imagenet'"),
    ("protocol", "semi", "unknown protocol"),
    ("schedule", "linear", "unknown schedule"),
    ("epochs", -1, "epochs must be"),
    ("lr", -1.0, "lr must be"),
])
def test_invalid_config_gives_a_clear_error(field, value, message):
    with pytest.raises(ValueError, match=message):
        run(dataclasses.replace(tiny(), **{field: value}))


def test_pure_protocol_needs_a_transfer_loss():
    with pytest.raises(ValueError, match="pure"):
        validate(tiny(protocol="pure"))


def test_diverging_loss_is_reported_once_per_epoch(tmp_path):
    with pytest.raises(NonFiniteLossError, match="epoch 1"):
        run(tiny(lr=1e30, output_dir=str(tmp_path)))
    assert not (tmp_path / CHECKPOINT_NAME).exists()  # a NaN model is never saved


def test_learning_rate_schedule_and_linear_scaling():
    config = validate(tiny(epochs=10, warmup_epochs=2, schedule="cosine"))
    factor = _lr_factor(config, steps_per_epoch=10)
    assert factor(0) == pytest.approx(1 / 20) and factor(19) == pytest.approx(1)
    assert factor(20) == pytest.approx(1) and factor(60) == pytest.approx(0.5)
    assert factor(99) < 0.01
    step = _lr_factor(validate(tiny(epochs=10, schedule="step", milestones=(0.5, 0.8))), 10)
    assert [step(s) for s in (0, 49, 50, 79, 80)] == pytest.approx([1, 1, 0.1, 0.1, 0.01])
    # A warm-up longer than the run (a preset's, with a few --epochs) spans the run.
    capped = _lr_factor(validate(tiny(epochs=1, warmup_epochs=5)), 10)
    assert [capped(s) for s in (0, 9)] == pytest.approx([0.1, 1])
    session = prepare(tiny(batch_size=32, lr=0.1, output_dir="unused"))
    assert session.optimizer.param_groups[0]["lr"] == pytest.approx(0.1 * 32 / 128)


def test_step_normalisation_with_device_tensors_equals_the_floats():
    from perceptcoh.engine.session import _normalisation

    dataset = load_dataset("digits", "test")
    mean, std = _normalisation(dataset, torch.device("cpu"))
    images = dataset.images[:16]
    assert torch.equal(normalize(images, mean, std),
                       normalize(images, dataset.mean, dataset.std))


def test_progress_lines_when_not_a_terminal(capsys, tmp_path):
    run(tiny(epochs=1, train_subset=128, progress=True, output_dir=str(tmp_path),
             triplet_points=5))
    assert "epoch 1/1" in capsys.readouterr().err


def _free_port() -> int:
    with socket.socket() as handle:
        handle.bind(("127.0.0.1", 0))
        return handle.getsockname()[1]


@pytest.mark.skipif(not torch.distributed.is_available(), reason="no torch.distributed")
def test_two_processes_reproduce_one_process_with_the_same_global_batch(teacher, tmp_path):
    """torchrun's environment -> gloo, DDP, each process half of every global batch, the PC
    loss ranking over the global batch: the same training as one process (no augmentation,
    and the MLP student has no batch norm), up to float rounding."""
    import torch.multiprocessing as mp

    config = tiny(method="pc", teacher_checkpoint=str(teacher[0]), train_subset=128,
                  batch_size=32, epochs=1, crop_padding=0, flip=False, triplet_points=5)
    single = run(dataclasses.replace(config, output_dir=str(tmp_path / "single")))
    distributed = dataclasses.replace(config, output_dir=str(tmp_path / "ddp"))
    # fork, not spawn: the workers need not import torch again (seconds each); but a process
    # that has initialised CUDA (a CUDA test ran before) cannot be forked safely.
    mp.start_processes(train_worker, args=(_free_port(), distributed, str(tmp_path)),
                       nprocs=2, start_method="spawn" if torch.cuda.is_initialized() else "fork")
    single_state = load_checkpoint(tmp_path / "single" / CHECKPOINT_NAME)["model_state"]
    ddp_state = load_checkpoint(tmp_path / "ddp" / CHECKPOINT_NAME)["model_state"]
    for name, value in single_state.items():
        torch.testing.assert_close(ddp_state[name], value, rtol=1e-4, atol=1e-5)
    histories = [torch.load(tmp_path / f"history{rank}.pt") for rank in range(2)]
    # Every process reports the global mean loss, that of the single process.
    assert histories[0][0]["loss"] == histories[1][0]["loss"]
    assert histories[0][0]["loss"] == pytest.approx(single["history"][0]["loss"], rel=1e-4)
    assert json.loads((tmp_path / "ddp" / RESULTS_NAME).read_text())["world_size"] == 2


@pytest.mark.cuda
@pytest.mark.parametrize("method", ["ce", "pc", "fitnet", "cc", "sp", "rkd", "pkt", "kd"])
def test_a_cuda_training_step_never_waits_for_the_device(teacher, method):
    session = prepare(tiny(method=method, teacher_checkpoint=str(teacher[0]), device="cuda",
                           output_dir="unused"))
    order = torch.randperm(len(session.train_set), device=session.device)
    generator = torch.Generator(device=session.device).manual_seed(0)
    train_step(session, order[:64], generator)  # first step: lazy initialisations
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")
    try:
        for step in range(1, 4):
            train_step(session, order[64 * step : 64 * (step + 1)], generator)
    finally:
        torch.cuda.set_sync_debug_mode(0)


# ---------------------------------------------------------------- precision


@pytest.mark.parametrize("capability, expected", [((7, 5), "fp16"), ((8, 0), "bf16"), ((9, 0), "bf16")])
def test_auto_precision_follows_the_compute_capability(monkeypatch, capability, expected):
    from perceptcoh.engine.config import resolve_precision

    # A T4 (7.5) says torch.cuda.is_bf16_supported() but has no fast bf16 convolutions.
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device=None: capability)
    assert resolve_precision("auto", torch.device("cuda")) == expected
    assert resolve_precision("auto", torch.device("cpu")) == "fp32"
    for explicit in ("bf16", "fp16", "fp32"):
        assert resolve_precision(explicit, torch.device("cuda")) == explicit


def test_precision_must_be_known():
    with pytest.raises(ValueError, match="unknown precision 'fp8'"):
        run(tiny(precision="fp8"))


def test_fp16_with_a_gradient_scaler_trains_records_and_resumes_on_cpu(tmp_path):
    # As far as a CPU allows: fp16 autocast and torch.amp.GradScaler("cpu"); the scaler's
    # state goes into the checkpoint, and a resumed run repeats the uninterrupted one.
    fields = dict(precision="fp16", epochs=2)
    uninterrupted = run(tiny(**fields, output_dir=str(tmp_path / "a")))
    assert uninterrupted["precision"] == "fp16"
    state = load_checkpoint(tmp_path / "a" / CHECKPOINT_NAME)
    assert state["scaler"] is not None and state["scaler"]["scale"] > 0
    first = run(tiny(**fields, output_dir=str(tmp_path / "b"), time_limit=0))
    assert not first["completed"]
    resumed = run(tiny(**fields, output_dir=str(tmp_path / "b"), resume=True))
    assert [h["loss"] for h in resumed["history"]] == [h["loss"] for h in uninterrupted["history"]]
    assert resumed["metrics"] == uninterrupted["metrics"]
    assert all(math.isfinite(h["loss"]) for h in resumed["history"])


def test_fp32_runs_have_no_scaler_and_say_so(tmp_path):
    results = run(tiny(output_dir=str(tmp_path)))
    assert results["precision"] == "fp32"  # "auto" on a CPU
    assert load_checkpoint(tmp_path / CHECKPOINT_NAME)["scaler"] is None


def test_under_autocast_the_teacher_computes_its_last_stage_in_float32():
    from perceptcoh.engine.loop import teacher_forward
    from perceptcoh.engine.session import prepare
    from perceptcoh.models import build_model

    for precision, wrapped in (("bf16", True), ("fp32", False)):
        session = prepare(tiny(method="pc", precision=precision),
                          teacher=build_model("digits_cnn", 10))
        assert getattr(session.teacher.project, "_float32_forward", False) is wrapped
        inputs = session.train_set.images[:8].float().div(255)
        features, logits = teacher_forward(session, session.teacher, inputs)
        assert features.dtype == torch.float32 and logits.dtype == torch.float32
