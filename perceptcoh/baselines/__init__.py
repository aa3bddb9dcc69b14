"""Baseline transfer losses the experiments compare against (book: book/theory/05_synthetic).

Every loss is an ``nn.Module`` with ``forward(student_features, teacher_features)`` returning
a 0-dim tensor, so a trainer can swap one for another (see :mod:`perceptcoh.registry`);
:class:`LogitKD` takes logits instead of features. Each is written from its paper:

* :class:`FitNet` (Romero et al., 2015): regress the teacher's features from the student's.
* :class:`SimilarityPreserving` (Tung & Mori, 2019): match row-normalised Gram matrices.
* :class:`CorrelationCongruence` (Peng et al., 2019): match RBF-kernel correlation matrices.
* :class:`RelationalKD` (Park et al., 2019): match pairwise distances and triplet angles.
* :class:`PKT` (Passalis & Tefas, 2018): match cosine-kernel conditional probabilities.
* :class:`LogitKD` (Hinton et al., 2015): match temperature-softened class probabilities.
* :class:`CRD` (Tian et al., 2020): contrast each student feature with its teacher's against
  a memory bank of other images' features (it also takes the batch's dataset positions).

Shared conventions, as in :class:`perceptcoh.PerceptionCoherenceLoss`: student features
are ``(B, q)`` and teacher features ``(B, p)`` floating tensors, ``q`` and ``p`` may differ;
the teacher is detached, so gradients reach the student features and the loss's own
learnable parts only; the loss is computed in float32 (float64 if an input is float64) with
autocast disabled, so bf16/fp16 features under autocast are safe. ``check_finite=False``
skips the NaN/Inf check (one host synchronisation per call on a GPU).

One module a loss (:mod:`~perceptcoh.baselines.fitnet`, :mod:`~perceptcoh.baselines.sp`,
:mod:`~perceptcoh.baselines.cc`, :mod:`~perceptcoh.baselines.rkd`,
:mod:`~perceptcoh.baselines.pkt`, :mod:`~perceptcoh.baselines.kd`,
:mod:`~perceptcoh.baselines.crd`), as in RepDistiller's
``distiller_zoo``; the checks and casts they share are :mod:`~perceptcoh.baselines.common`.
"""

from .cc import CorrelationCongruence
from .crd import CRD
from .fitnet import FitNet
from .kd import LogitKD
from .pkt import PKT
from .rkd import RelationalKD
from .sp import SimilarityPreserving

__all__ = [
    "FitNet",
    "SimilarityPreserving",
    "CorrelationCongruence",
    "RelationalKD",
    "PKT",
    "LogitKD",
    "CRD",
]
