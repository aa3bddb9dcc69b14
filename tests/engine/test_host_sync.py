"""No loss and no training step waits for the GPU, shown on a CPU machine: every registered
loss, forward and backward, and the engine's step (``training_batch``, ``teacher_forward``,
``optimiser_step``) for every method, under bf16 autocast and under fp16 with a gradient
scaler, run on fake CUDA tensors (:mod:`fake_cuda`), and no operation may receive a CPU
tensor or read a device value on the host.

What stays unchecked here: the CUDA generators themselves (a fake cannot create one: CRD's
negatives draw on the device from a CPU generator standing in for a device one, and the
augmentation from the device's default generator), the autograd engine (:func:`fake_backward` calls the same backward
formulas, node by node), the collectives of a process group, and kernels' own behaviour.
``tests/test_loss.py`` and ``tests/test_train.py`` check the same on a real GPU with
``torch.cuda.set_sync_debug_mode("error")``.
"""

from __future__ import annotations

import pytest
import torch

from digits_runs import tiny
from fake_cuda import HostSyncError, fake_backward, fake_cuda, outside_fake_mode, traced
from perceptcoh import LOSSES, build_loss
from perceptcoh.registry import SPECS
from perceptcoh.engine import prepare
from perceptcoh.engine import session as session_module
from perceptcoh.engine.loop import optimiser_step, teacher_forward, training_batch

BATCH, STUDENT, TEACHER, DATASET = 16, 8, 32, 100

# Every registered loss, and PC in each of its paths (soft teacher ranks, r = 1, small
# chunks, cosine, the finite check on or off).
CASES = [(name, {}) for name in LOSSES] + [
    ("pc", {"teacher_tau": 0.05}),
    ("pc", {"r": 1, "chunk_size": 3}),
    ("pc", {"metric_student": "cosine", "metric_teacher": "sqeuclidean"}),
    ("pc", {"check_finite": False}),
]
CASE_IDS = [name + "".join(f"-{key}={value}" for key, value in options.items())
            for name, options in CASES]


@pytest.fixture
def cuda_generators_on_the_cpu(monkeypatch):
    """``torch.Generator(device="cuda")`` needs a real GPU: a CPU generator stands in."""
    real = torch.Generator

    def generator(device=None):
        return real() if device is not None and torch.device(device).type == "cuda" else real(device)

    monkeypatch.setattr(torch, "Generator", generator)


def loss_inputs(name: str, device: str):
    generator = torch.Generator().manual_seed(0)
    width = STUDENT if name == "kd" else TEACHER  # KD compares logits of one width
    student = torch.randn(BATCH, STUDENT, generator=generator).to(device).requires_grad_(True)
    teacher = torch.randn(BATCH, width, generator=generator).to(device)
    extra = (torch.randperm(DATASET, generator=generator)[:BATCH].to(device),)
    return student, teacher, extra if SPECS[name].indexed else ()


def build(name: str, options: dict) -> torch.nn.Module:
    torch.manual_seed(0)
    return build_loss(name, student_dim=STUDENT, teacher_dim=TEACHER, dataset_size=DATASET,
                      **({"nce_k": 10} if name == "crd" else {}), **options)


@pytest.mark.parametrize("name, options", CASES, ids=CASE_IDS)
def test_fake_backward_gives_the_autograd_gradient(name, options):
    """The stand-in for the autograd engine, on real CPU tensors."""
    student, teacher, extra = loss_inputs(name, "cpu")
    build(name, options)(student, teacher, *extra).backward()
    expected = student.grad
    student.grad = None
    loss = build(name, options)
    fake_backward(loss(student, teacher, *extra))
    torch.testing.assert_close(student.grad, expected)
    for parameter in loss.parameters():
        assert parameter.grad is not None


@pytest.mark.parametrize("name, options", CASES, ids=CASE_IDS)
def test_no_loss_waits_for_the_device(name, options, cuda_generators_on_the_cpu):
    loss = build(name, options)
    with fake_cuda():
        loss = loss.to("cuda")
        student, teacher, extra = loss_inputs(name, "cuda")
        with traced() as detector:
            value = loss(student, teacher, *extra)
            nodes = fake_backward(value)
        assert student.grad.device.type == "cuda" and student.grad.shape == student.shape
    assert nodes > 1 and detector.operations > 10


def test_the_detector_catches_each_kind_of_host_synchronisation():
    with fake_cuda():
        x = torch.zeros(4, 4, device="cuda")
        rows = torch.arange(4, device="cuda")
        with pytest.raises(HostSyncError, match="CPU tensors"):
            with traced():
                x[rows, rows] = float("inf")  # the scalar becomes a CPU tensor
        with pytest.raises(HostSyncError, match="CPU tensors"):
            with traced():
                x * torch.tensor(2.0)  # a 0-dim CPU tensor, copied over
        for read in (lambda: x.sum().item(), lambda: x.tolist(), lambda: bool(x.sum()),
                     lambda: x.nonzero(), lambda: x[x > 0]):
            with pytest.raises(HostSyncError, match="host|mask"):
                with traced():
                    read()
        with traced():  # what the fixed ranks do instead
            x.scatter_(1, rows[:, None], float("inf"))
            x.masked_fill_(x > 0, 0.0)


def test_ranks_and_metrics_create_no_cpu_tensor():
    """Perception, the gap and the ranking metrics (the evaluation's retrieval_map, which
    returns a float, is left out)."""
    from perceptcoh import knn_agreement, perception, perception_gap, triplet_concordance

    with fake_cuda():
        student, teacher = torch.randn(12, 3, device="cuda"), torch.randn(12, 5, device="cuda")
        with traced():
            perception(teacher, chunk_size=5)
            perception_gap(student, teacher, chunk_size=5)
            triplet_concordance(student, teacher, chunk_size=5)
            knn_agreement(student, teacher, k=3, chunk_size=5)


STEP_CASES = [(method, "auto") for method in ["ce", *LOSSES]] + [("pc", "fp16"), ("crd", "fp16")]


@pytest.mark.parametrize("method, precision", STEP_CASES)
def test_no_training_step_waits_for_the_device(teacher, monkeypatch, method, precision,
                                               cuda_generators_on_the_cpu):
    """``auto`` on a GPU of compute capability 8.0 is bf16 autocast; ``fp16`` adds the
    gradient scaler (Colab's T4), with the fused optimiser's on-device overflow check."""
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device=None: (8, 0))
    monkeypatch.setattr(torch.backends.cudnn, "benchmark", torch.backends.cudnn.benchmark)
    monkeypatch.setattr(torch.Tensor, "backward",
                        lambda self, gradient=None, **_: fake_backward(self, gradient))
    # The data, the teacher, the student and the loss are made on the CPU, for real, then
    # moved to the fake GPU by prepare().
    for name in ("load_dataset", "load_teacher", "build_model", "build_loss"):
        monkeypatch.setattr(session_module, name, outside_fake_mode(getattr(session_module, name)))
    config = tiny(method=method, teacher_checkpoint=str(teacher[0]), device="cuda",
                  precision=precision, output_dir="unused",
                  **({"loss_options": {"nce_k": 10}} if method == "crd" else {}))
    with fake_cuda(monkeypatch):
        session = prepare(config)
        assert session.device.type == "cuda"
        assert session.precision == ("fp16" if precision == "fp16" else "bf16")
        assert (session.scaler is not None and session.scaler.is_enabled()) == (precision == "fp16")
        order = torch.randperm(len(session.train_set), device=session.device)
        for step in range(2):  # the first step initialises lazily (the scaler's scale)
            indices = order[step * 64 : (step + 1) * 64]
            with traced():
                # No generator: the draws of a CUDA one, on the device's default generator.
                inputs, labels = training_batch(session, indices, None)
                outputs = teacher_forward(session, session.teacher, inputs)
                loss, logits = optimiser_step(session, inputs, labels, *outputs,
                                              indices=indices)
        assert loss.device.type == "cuda" and logits.shape == (64, session.train_set.num_classes)
        if method != "ce":  # the teacher ran under autocast, its last stage in float32
            assert all(module._float32_forward for module in session.teacher.last_stage())
            assert outputs[0].dtype == outputs[1].dtype == torch.float32
