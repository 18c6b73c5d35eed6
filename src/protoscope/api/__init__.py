"""The library without a study file: one call per method, for models in memory.

Every function takes `nn.Module`s and plain tensors (or a DataLoader), returns plain objects —
tensors, numpy arrays, rsatoolbox `RDMs`, the fitted alignment estimators — and writes nothing
unless asked (`show(..., path=...)`). Each runs the same code as the stage that computes it for a
study (`protoscope.stages`), so a notebook result and a stored one agree:

    prototypes       evolve   the engine: an activation-maximizing image per unit
    receptive_field  evolve   the centre unit's effective receptive field, its Gaussian and mask
    atlas            atlas    activation atlas: UMAP map, grid of whitened means, an icon per cell
    rdms             rsa      an RDM per model (checkpoint) of a stimulus set, with descriptors
    trust            -        how far each prototype can be trusted, judged by natural images (#28)
    tuning           tuning   hue, orientation, frequency and contrast curves of every unit (#31)
    align            align    unit correspondence of two nets: correlation, matching, MI, sparse, CKA
    show             -        any of their images as one picture (Jupyter shows it; PNG on request)

Mistakes (a wrong layer, a model on another device, an image size the model cannot take) are
`protoscope.UserError`s that say what is valid.
"""

from ..synth.engine import Prototypes
from .atlases import Atlas, atlas
from .display import show
from .similarity import align, rdms
from .synthesis import prototypes, receptive_field
from .trust import TrustScores, trust
from .tuning import Tuning, tuning

# result types whose modules import scikit-learn, scipy or torchvision: loaded when asked for, so
# `import protoscope` (and the CLI) stays as quick as it was
_LAZY = {"PairAlignment": "..analyze.align.pair", "ReceptiveField": "..synth.receptive"}


def declare(model, layouts: dict | None = None, forward_kwargs: dict | None = None):
    """What protoscope cannot find out about your model, told once: `layouts` of layers whose unit
    axis it cannot tell ({"blocks.3": "NHWC"}; NCHW, NHWC, NTD or ND) and `forward_kwargs` its
    forward needs besides the images. Every call on this model object reads them; returns `model`."""
    from ..nets.layers import declare as declare_model

    return declare_model(model, layouts, forward_kwargs)


def __getattr__(name: str):
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name], __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = ["Atlas", "PairAlignment", "Prototypes", "ReceptiveField", "TrustScores", "align", "atlas", "declare",
           "prototypes", "rdms", "receptive_field", "show", "trust", "Tuning", "tuning"]
