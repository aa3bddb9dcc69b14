"""perceptcoh: feature representation transfer via perception coherence.

The mathematics is the book's (its theory chapters, ``book/theory``), in its notation:
``perception`` gives the normalised ranks ``R``,
``perception_gap`` the plug-in estimate of ``Delta_r``, and ``PerceptionCoherenceLoss``
the smoothed surrogate a student is trained with. The baselines share the loss's
signature ``loss(student, teacher)`` and are registered by name in ``LOSSES``.
"""

from .baselines import (CRD, PKT, CorrelationCongruence, FitNet, LogitKD, RelationalKD,
                        SimilarityPreserving)
from .dissimilarity import dissimilarity
from .loss import PerceptionCoherenceLoss
from .metrics import knn_agreement, triplet_concordance
from .perception import perception, perception_gap
from .registry import LOGIT_LOSSES, LOSSES, build_loss

__all__ = [
    "dissimilarity",
    "perception",
    "perception_gap",
    "triplet_concordance",
    "knn_agreement",
    "PerceptionCoherenceLoss",
    "FitNet",
    "SimilarityPreserving",
    "CorrelationCongruence",
    "RelationalKD",
    "PKT",
    "LogitKD",
    "CRD",
    "LOSSES",
    "LOGIT_LOSSES",
    "build_loss",
]
__version__ = "0.1.0"
