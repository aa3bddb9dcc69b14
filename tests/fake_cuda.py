"""CUDA operations traced on a CPU machine: fake CUDA tensors and a dispatch mode that fails
on every operation that would make the host wait for the device.

``FakeTensorMode`` gives tensors a device and a shape but no data, so CUDA code runs on a
machine without a GPU; :class:`HostSyncDetector`, a ``TorchDispatchMode`` inside it, sees
every operation the dispatcher runs and every tensor it receives. Two things wait for the
GPU: a CPU tensor meeting device work (a Python number that indexed assignment turns into
a 0-dim CPU tensor is copied to the device with a blocking copy), and reading a device
value on the host (``.item()``, ``.tolist()``, ``bool(tensor)``, ``nonzero``, boolean-mask
indexing, whose output shape depends on the values).

The autograd engine asks for a real CUDA context, so :func:`fake_backward` runs a backward
pass without it: it calls the graph's nodes (each one a backward formula) in dependency
order, as the engine would, so that the dispatch mode sees their operations too.
"""

from __future__ import annotations

import collections
import contextlib
from typing import Iterator

import torch
from torch._subclasses import fake_tensor
from torch._subclasses.fake_tensor import FakeTensorMode
from torch.autograd.function import BackwardCFunction
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_flatten

aten = torch.ops.aten

# Operations whose result the host must read from the device (or whose shape depends on
# the device's values): each one waits for the GPU.
HOST_READS = {
    aten._local_scalar_dense.default,  # .item(), .tolist(), float(t), int(t)
    aten.is_nonzero.default,  # bool(t)
    aten.nonzero.default,
    aten.masked_select.default,
    aten.equal.default,
    aten.unique_consecutive.default,
    aten._unique2.default,
    aten.unique_dim.default,
    aten.repeat_interleave.Tensor,
}


# The fused SGD kernel (the engine's optimiser on a GPU) has no fake implementation: it
# updates its arguments in place and returns nothing, so an empty one describes it.
_FUSED_OPTIMISERS = torch.library.Library("aten", "IMPL")
for _overload in ("_fused_sgd_", "_fused_sgd_.tensor_lr"):
    _FUSED_OPTIMISERS.impl(_overload, lambda *args, **kwargs: None, "Meta")


class HostSyncError(AssertionError):
    """An operation on fake CUDA tensors would have made the host wait for the device."""


class HostSyncDetector(TorchDispatchMode):
    """Record every operation that receives a CPU tensor, and raise at once on a read of a
    device value (``HOST_READS``, or indexing with a boolean mask)."""

    def __init__(self) -> None:
        super().__init__()
        self.cpu_inputs: list[str] = []
        self.operations = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        self.operations += 1
        tensors = [x for x in tree_flatten((args, kwargs))[0] if isinstance(x, torch.Tensor)]
        if func in HOST_READS:
            raise HostSyncError(f"{func} reads a device value on the host")
        if func in (aten.index.Tensor, aten.index_put_.default, aten.index_put.default):
            if any(t is not None and t.dtype == torch.bool for t in args[1]):
                raise HostSyncError(f"{func} with a boolean mask (a nonzero on the device)")
        cpu = [tuple(t.shape) for t in tensors if t.device.type == "cpu"]
        if cpu and func is not torch.ops.prim.device.default:  # metadata, not data
            self.cpu_inputs.append(f"{func} received CPU tensors of shapes {cpu}")
        return func(*args, **kwargs)

    def check(self) -> None:
        if self.cpu_inputs:
            raise HostSyncError("operations received CPU tensors (a copy that waits for the "
                                "device):\n  " + "\n  ".join(self.cpu_inputs))


@contextlib.contextmanager
def fake_cuda(monkeypatch=None) -> Iterator[FakeTensorMode]:
    """Fake tensors, with real tensors converted on first use (``module.to("cuda")`` moves a
    real module's parameters to fake CUDA ones). With ``monkeypatch``, ``torch.cuda`` also
    says a device is there, for code that asks before it uses one."""
    if monkeypatch is not None:
        monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
        monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
        monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *args, **kwargs: True)
        monkeypatch.setattr(torch.cuda, "current_device", lambda: 0)
        monkeypatch.setattr(torch.cuda, "set_device", lambda device: None)
        monkeypatch.setattr(torch.cuda, "synchronize", lambda device=None: None)
    with _NoDeviceFakeTensorMode(allow_non_fake_inputs=True) as mode:
        yield mode


class _NoDeviceFakeTensorMode(FakeTensorMode):
    """Never a real device, even where ``torch.cuda.is_available()`` is faked: the plain
    mode would otherwise move real tensors (small constants, modules) to a real GPU."""

    @property
    def avoid_device_init(self) -> bool:
        return True


def outside_fake_mode(function):
    """``function`` run with real tensors even inside the fake mode (data read from disk,
    models built on the CPU), so that moving its result to ``"cuda"`` makes it fake."""

    def wrapper(*args, **kwargs):
        with fake_tensor.unset_fake_temporarily():
            return function(*args, **kwargs)

    return wrapper


@contextlib.contextmanager
def traced() -> Iterator[HostSyncDetector]:
    """Trace the operations of the block; fail at its end if any received a CPU tensor."""
    detector = HostSyncDetector()
    with detector:
        yield detector
    detector.check()


def fake_backward(output: torch.Tensor, gradient: torch.Tensor | None = None) -> int:
    """``output.backward(gradient)`` without the autograd engine: every node of the graph
    is called once all the nodes that feed it gradients are done, and the leaves'
    ``AccumulateGrad`` nodes write ``.grad``. Returns the number of nodes run."""
    root = output.grad_fn
    if root is None:
        raise ValueError("output does not require grad")
    pending: collections.Counter = collections.Counter()
    seen, stack = {root}, [root]
    while stack:
        node = stack.pop()
        for child, _ in node.next_functions:
            if child is not None:
                pending[child] += 1
                if child not in seen:
                    seen.add(child)
                    stack.append(child)
    inputs: dict = {root: {0: torch.ones_like(output) if gradient is None else gradient}}
    ready, count = [root], 0
    while ready:
        node = ready.pop()
        count += 1
        received = inputs.pop(node, {})
        metadata = node._input_metadata
        arguments = []
        for slot, expected in enumerate(metadata):
            grad = received.get(slot)
            # As the engine does: a gradient of a broadcast input is summed to its shape.
            if grad is not None and tuple(grad.shape) != tuple(expected.shape):
                grad = grad.sum_to_size(expected.shape)
            arguments.append(grad)
        if isinstance(node, BackwardCFunction):  # a custom autograd.Function's backward
            arguments = [torch.zeros(m.shape, dtype=m.dtype, device=m.device) if g is None
                         else g for g, m in zip(arguments, metadata)]
            outputs = node.apply(*arguments)
        else:
            outputs = node(*arguments)
        if not isinstance(outputs, tuple):
            outputs = (outputs,)
        for (child, slot), grad in zip(node.next_functions, outputs):
            if child is None:
                continue
            if grad is not None:
                slots = inputs.setdefault(child, {})
                slots[slot] = grad if slots.get(slot) is None else slots[slot] + grad
            pending[child] -= 1
            if pending[child] == 0:
                ready.append(child)
    return count
