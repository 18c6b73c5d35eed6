"""One contract for every aligner: scikit-learn style (parameters in __init__, fit returns self, learned `_`)."""

import numpy as np
import pytest
from sklearn.base import clone
from sklearn.exceptions import NotFittedError
from sklearn.utils.validation import check_is_fitted

from protoscope.analyze.align import (CKA, Correlation, IdentityTracking, MappingClustering, Matching, Moments,
                                      MutualInformation, SparsePrediction, SpectralAlignment, correlations)

from .planted import grouped_pair


def _inputs():
    a, b, _, _ = grouped_pair(n=500, groups=2, size=2)
    moments = Moments().partial_fit(a, b)
    corr = Correlation().fit(moments)
    return a, b, moments, corr


CASES = {
    "Moments": (Moments, lambda a, b, m, c: ((a, b), "partial_fit")),
    "Correlation": (Correlation, lambda a, b, m, c: ((m,), "fit")),
    "Matching": (Matching, lambda a, b, m, c: ((c.between_,), "fit")),
    "MutualInformation": (MutualInformation, lambda a, b, m, c: ((a, b), "fit")),
    "SparsePrediction": (SparsePrediction, lambda a, b, m, c: ((c.within_a_, c.between_), "fit")),
    "MappingClustering": (MappingClustering, lambda a, b, m, c: ((c.between_,), "fit")),
    "SpectralAlignment": (SpectralAlignment, lambda a, b, m, c: ((c.within_a_, c.between_, c.within_b_), "fit")),
    "CKA": (CKA, lambda a, b, m, c: ((m,), "fit")),
    "IdentityTracking": (IdentityTracking, lambda a, b, m, c: (({0: correlations(a, a), 1: c},), "fit")),
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_every_estimator_follows_the_sklearn_contract(name):
    cls, make = CASES[name]
    a, b, m, c = _inputs()
    est = cls()
    params = est.get_params()
    assert all(not k.endswith("_") for k in params)
    assert not [k for k in vars(est) if k.endswith("_")]  # __init__ learns nothing
    with pytest.raises(NotFittedError):
        check_is_fitted(est)
    args, method = make(a, b, m, c)
    assert getattr(est, method)(*args) is est
    check_is_fitted(est)
    assert clone(est).get_params() == params
    learned = [k for k in vars(est) if k.endswith("_") and not k.startswith("_")]
    assert learned
    for key in learned:  # no silent NaN in anything learned, except the documented "undefined" cluster stats
        value = getattr(est, key)
        if isinstance(value, np.ndarray) and value.dtype.kind == "f" and key not in ("between_", "within_"):
            assert np.isfinite(value).all(), f"{name}.{key} has NaN/inf"
