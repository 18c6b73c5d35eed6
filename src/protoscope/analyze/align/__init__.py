"""Convergent learning: aligning the units of two networks, or of two checkpoints of one.

After Li, Yosinski, Clune, Lipson & Hopcroft (ICLR 2016). Every estimator is
scikit-learn-style (`fit` returns self, learned attributes end in `_`) and
starts from streamed statistics (`Moments`), so a layer's activations never
have to be in memory at once.

    stats        Moments: running sums of x, x xᵀ (and CKA's higher-order sums), float64
    correlation  Correlation: within- and between-net correlations; dead units reported, excluded
    matching     Matching: semi-matching and max-weight bipartite matching
    mutual_info  MutualInformation: percentile-binned MI of every unit pair, in nats
    sparse       SparsePrediction: the L1 mapping layer, exactly, along a penalty sweep
    clustering   MappingClustering (hierarchical, of [I, W; Wᵀ, I]), SpectralAlignment
    cka          CKA: linear CKA, biased and debiased
    track        IdentityTracking (epoch e vs final), prototype_similarity
"""

from .cka import CKA, linear_cka
from .clustering import MappingClustering, SpectralAlignment
from .correlation import Correlation, correlations
from .matching import Matching, bipartite_matching, semi_matching
from .mutual_info import MutualInformation
from .sparse import SEED_PENALTIES, SparsePrediction
from .stats import Moments
from .track import IdentityTracking, prototype_similarity

__all__ = [
    "CKA", "Correlation", "IdentityTracking", "MappingClustering", "Matching", "Moments", "MutualInformation",
    "SEED_PENALTIES", "SparsePrediction", "SpectralAlignment", "bipartite_matching", "correlations",
    "linear_cka", "prototype_similarity", "semi_matching",
]
