"""Representational similarity and unit alignment of models in memory: the `rsa` and `align` stages' steps."""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from ..errors import UserError
from .inputs import as_images, as_models, check_layer, engine_state, layer_shape, options, run_device

# AlignSpec fields that name a study's pairs, layers, epochs and stimulus set: the arguments say those here
STUDY_ONLY = ("pairs", "layers", "epochs", "track", "images")


def rdms(models, layer: str, images, labels=None, *, categories=None, run: str = "model",
         distance: str = "correlation", features: str = "mean", folds: int = 2, batch_size: int = 256,
         device="auto"):
    """RDMs of `images` at `layer`, one per model: an rsatoolbox `RDMs`, as the `rsa` stage stores them.

    `models`: one model, a list (checkpoints: epochs 0, 1, ...) or a dict {epoch: model}; each RDM
    carries `run` / `layer` / `epoch` rdm descriptors (select with `.subset("epoch", 3)`) and
    `image` / `category` pattern descriptors. `labels` (ints indexing `categories`, or names;
    a DataLoader's own labels when not given) name each image's category. `features`: "mean"
    (conv maps averaged over space) or "flatten"; `distance`: "correlation" (1 - Pearson r),
    "euclidean" or "crossnobis" (category x category, cross-validated over `folds`).
    Compare with `rsatoolbox.rdm.compare`; writes nothing.
    """
    from ..analyze.activations import layer_activations
    from ..store.activations import Activations
    from ..analyze.rsa import epoch_rdms

    epochs, models = _epochs(models)
    device = run_device(models, device)
    x, labels = as_images(images, labels)
    codes, names = _categories(labels, categories, len(x))
    for m in models:
        layer_shape(m, check_layer(m, layer), tuple(x.shape[-2:]), device)
    values = []
    for m in models:
        with engine_state(m, frozen=False):
            acts = layer_activations(m, layer, x, device=device, batch_size=batch_size, features=features)
        values.append(acts[layer].cpu().numpy())
    return epoch_rdms(Activations(run, layer, np.stack(values), codes, names, epochs), distance, folds)


def _epochs(models) -> tuple[list[int], list]:
    if isinstance(models, Mapping):
        if not all(isinstance(e, (int, np.integer)) for e in models):
            raise UserError(f"A dict of models maps epochs (integers) to models, got keys {list(models)[:5]}.")
        listed, _ = as_models(list(models.values()), "rdms", "rsa")
        return [int(e) for e in models], listed
    listed, _ = as_models(models, "rdms", "rsa")
    return list(range(len(listed))), listed


def _categories(labels, categories, n: int) -> tuple[np.ndarray, tuple[str, ...]]:
    """(int codes, category names) from labels that are names, or ints indexing `categories`."""
    if labels is None:
        return np.zeros(n, np.int64), ("all",)
    if labels.dtype.kind in "iu":
        names = tuple(str(c) for c in categories) if categories is not None else tuple(
            str(c) for c in range(int(labels.max()) + 1))
        if labels.min() < 0 or labels.max() >= len(names):
            raise UserError(f"labels must index the {len(names)} categories (0 .. {len(names) - 1}); "
                            f"got {int(labels.min())} .. {int(labels.max())}.")
        return labels.astype(np.int64), names
    names, codes = np.unique(labels.astype(str), return_inverse=True)
    return codes.astype(np.int64), tuple(names)


def align(model_a, model_b, layer: str, images, *, seed: int = 0, device="auto", **settings):
    """How the units of two networks correspond at `layer` (Li et al. 2016): every estimator of the `align` stage.

    One pass of `images` through both nets keeps streamed moments (every (image, position) a sample
    of its channel) and a row sample; from them come the fitted estimators (scikit-learn style,
    learned attributes ending in `_`): `correlation` (within and between nets; dead units listed),
    `bipartite` / `semi` matching, `mutual_info` and its matchings, `sparse` (the L1 mapping
    along a penalty sweep), `clustering` (hierarchical, of the mapping), `spectral` (many-to-many
    groups), and `cka` / `cka_debiased` (from spatial means). `seed` draws the mutual-information
    sample (the stage uses the epoch). `**settings` are the study's `align:` fields: `threshold`,
    `mi_samples`, `bin_mass`, `penalties`, `sparse_iter`, `cluster_penalty`, `tau`, `clusters`,
    `alpha`, `batch_size`. Returns a `PairAlignment`; writes nothing.
    """
    from ..analyze.align.pair import accumulate, check_memory, fit_pair
    from ..study import AlignSpec

    models, _ = as_models([model_a, model_b], "align")
    device = run_device(models, device)
    spec = options(AlignSpec, settings, "align", drop=STUDY_ONLY)
    x, _ = as_images(images)
    shapes = [layer_shape(m, check_layer(m, layer), tuple(x.shape[-2:]), device) for m in models]
    if shapes[0][2:] != shapes[1][2:]:
        raise UserError(f"Layer {layer!r} has {shapes[0][2:]} positions in model_a and {shapes[1][2:]} in model_b; "
                        "units are compared position by position, so both need the same.")
    check_memory(shapes[0][1], shapes[1][1], spec, f"at layer {layer!r}")
    with engine_state(model_a, frozen=False), engine_state(model_b, frozen=False):
        streamed = accumulate(models, [layer], [(0, 1)], x, device=device, batch_size=spec.batch_size,
                              mi_samples=spec.mi_samples, seed=seed, names=["a", "b"])
    key = ((0, 1), layer)
    return fit_pair(streamed.pairs[key], streamed.samples.get(key), spec, pooled=streamed.pooled)
