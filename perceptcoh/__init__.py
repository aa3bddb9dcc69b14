"""perceptcoh: feature representation transfer via perception coherence.

The mathematics is in SPEC.md's notation: ``perception`` gives the normalised ranks ``R``,
``perception_gap`` the plug-in estimate of ``Delta_r``, and ``PerceptionCoherenceLoss``
the smoothed surrogate a student is trained with.
"""

from .dissimilarity import dissimilarity
from .loss import PerceptionCoherenceLoss
from .perception import perception, perception_gap

__all__ = [
    "dissimilarity",
    "perception",
    "perception_gap",
    "PerceptionCoherenceLoss",
]
__version__ = "0.1.0"
