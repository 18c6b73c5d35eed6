"""The study file's method sections: probes, synthesis, RSA, prototype metrics, atlases, width, alignment, trust."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from pydantic import Field, field_validator, model_validator

from ..errors import did_you_mean
from .runs import Classifier, DataSpec, Strict

if TYPE_CHECKING:
    from ..synth.engine import EngineConfig

class ProbeSpec(Strict):
    """Linear probes on frozen, pooled features of every checkpoint."""

    layer: str | None = Field(None, description="default: the architecture's pooled feature layer")
    classifiers: list[Classifier] = Field(["logreg", "svm", "adam"],
        description="logreg (logistic regression), svm (linear SVM), adam (a linear layer trained with Adam); each on "
                    "standardized features")
    data: DataSpec | None = Field(None, description="default: the run's data set")
    train_size: int = Field(2000, ge=8, description="shapes: images generated; digits: at most the 1297 training scans")
    test_size: int = Field(1000, ge=4, description="shapes: images generated; digits: at most the 500 held-out scans")
    adam_epochs: int = Field(250, ge=1, description="epochs of the Adam probe")


class _Engine:
    """EngineConfig's defaults (synth/engine.py says why), repeated: reading them there imports torch.
    tests/test_study_loading.py keeps the two equal."""

    pool_size = 1024
    cma_generations = 3
    adam_steps = 64
    adam_lr = 2.0
    adam_betas = (0.5, 0.9)
    patience = 8


class SynthSpec(Strict):
    """Prototype synthesis: which generator, objective and budgets; see synth/engine.py."""

    generator: str = Field("fourier",
        description="fourier (decorrelated colour, 1/f spectrum), maco (phase only), pixel, deepsim-fc6 (local "
                    "weights)")
    generator_options: dict[str, Any] = Field(default_factory=dict, description="e.g. cutoff, weights_path")
    objective: Literal["centre", "mean"] = Field("centre",
        description="centre: the channel at the cell whose receptive field is centred; mean: its spatial mean")
    image_size: int | None = Field(None, ge=8, description="default: the run's image size")
    epochs: list[int] | None = Field(None, description="default: every checkpoint")
    repeats: int = Field(2, ge=1,
        description="independent searches per unit (seeds seed, seed + 1, ...): consistency compares them")
    seed: int = Field(42, description="repeat r uses seed + r, the same at every epoch")
    # the engine's own defaults (synth/engine.py says why they are what they are)
    pool_size: int = Field(_Engine.pool_size, ge=1,
        description="random (and natural) images scored for every unit at once; each unit starts from its best")
    cma_generations: int = Field(_Engine.cma_generations, ge=0,
        description="CMA-ES generations for the units the pool left silent")
    cma_popsize: int | None = Field(None, ge=2,
        description="CMA-ES population; default: CMA-ES's own for the latent size")
    adam_steps: int = Field(_Engine.adam_steps, ge=0, description="Adam steps per unit")
    adam_lr: float = Field(_Engine.adam_lr, gt=0, description="in units of the generator's latent scale")
    adam_betas: tuple[float, float] = Field(_Engine.adam_betas, description="Adam's moment decay rates")
    patience: int = Field(_Engine.patience, ge=1, description="Adam steps without gain before a unit stops")
    batch_size: int | None = Field(None, ge=1,
        description="images per forward pass; default: as many as memory_gb holds (on a CPU at most 64)")
    memory_gb: float = Field(2.0, gt=0, description="memory one batched search may use")
    robust: bool = Field(False, description="Adam sees each image slightly moved, scaled and turned at every step")
    natural_starts: int = Field(64, ge=0, description="stimulus images encoded into the pool: a unit a photo excites "
                                                      "is never left silent (0: random images only)")
    crop: bool = Field(True, description="compute only the input region the studied unit sees")
    rf: Literal["layer", "unit", "none"] = Field("layer",
        description="receptive field: one per layer (the mean over channels, as the seed), one per unit (~130x the "
                    "cost), none")
    rf_samples: int = Field(500, ge=1, description="uniform-noise images per receptive-field map")

    def engine_config(self) -> EngineConfig:
        from ..synth.engine import EngineConfig  # here, not above: the engine needs torch, a study does not

        fields = set(EngineConfig.__dataclass_fields__) - {"backtrack", "tol", "cma_sigma", "cpu_batch_size"}  # no study sets those
        return EngineConfig(**{name: getattr(self, name) for name in fields})


class RSASpec(Strict):
    """Representational similarity over training: RDMs of one fixed stimulus set per run, epoch and layer.

    Every run sees the same stimulus images, so RDMs compare across runs as well as epochs.
    """

    layers: list[str] | None = Field(None, description="default: the study's layers")
    epochs: list[int] | None = Field(None, description="default: every checkpoint")
    data: DataSpec | None = Field(None, description="stimulus images; default: the first run's data set")
    images: int = Field(400, ge=4, description="stimulus images (class-balanced)")
    features: Literal["mean", "flatten"] = Field("mean", description="conv maps averaged over space, or flattened")
    distance: Literal["correlation", "euclidean", "crossnobis"] = Field("correlation",
        description="correlation (1 - Pearson r), euclidean (rsatoolbox's), or crossnobis (cross-validated)")
    folds: int = Field(2, ge=2, description="crossnobis: interleaved partitions of each category's images")
    compare: list[Literal["pearson", "spearman", "cosine"]] = Field(
        ["pearson", "spearman"], min_length=1, description="RDM comparison methods for the trajectory metrics")
    snapshots: list[int] | None = Field(None, description="epochs drawn as RDMs; default: first, middle, last")
    batch_size: int = Field(256, ge=1, description="images per forward pass")


class SpaceSpec(Strict):
    """An embedding space: a torchvision model with local weights, or a checkpoint of this study.

    `model` names a torchvision model (its weights from `weights`: a file, or the name of one of its
    weight sets, read from the torch hub cache); `run` (+ `epoch`) names a checkpoint of the study.
    """

    model: str | None = Field(None, description="torchvision name, e.g. resnet50, vgg16, mobilenet_v2")
    weights: str = Field("IMAGENET1K_V1",
        description="a weights file, or a weight-set name found in the torch hub cache")
    run: str | None = Field(None, description="a run of this study: its checkpoint embeds the prototypes")
    epoch: int | None = Field(None, ge=0, description="the run's checkpoint; default: its last")
    layer: str | None = Field(None, description="default: the penultimate (pooled) layer")
    image_size: int | None = Field(None, ge=8, description="input size; default: the model's own")
    name: str | None = Field(None, description="the space's label in the metrics table")

    @model_validator(mode="after")
    def _one_source(self):
        if (self.model is None) == (self.run is None):
            raise ValueError("a space names either `model` (torchvision) or `run` (a checkpoint of the study)")
        if self.name is not None and (not self.name or "/" in self.name or self.name.startswith(".")):
            raise ValueError(f"space name {self.name!r} must be non-empty, without '/', not starting with '.'")
        return self


class AnalyzeSpec(Strict):
    """Prototype metrics: diversity, rate of change and re-evolution consistency; see analyze/prototype_metrics.py."""

    spaces: list[str | SpaceSpec] = Field(
        ["pixel"], min_length=1, description="pixel, a torchvision name (hub-cache weights), or a SpaceSpec")
    distances: list[Literal["mse", "cosine"]] = Field(["mse", "cosine"], min_length=1,
        description="mse, and cosine (1 - cosine similarity), between masked prototypes")
    masked: bool = Field(True, description="multiply each prototype by its receptive-field mask first")
    exclude_silent: bool = Field(True, description="leave out units no image excited")
    batch_size: int = Field(256, ge=1, description="images per embedding forward pass")
    strip_units: int = Field(8, ge=1, description="units per development strip, picked by rate of change")
    units: dict[str, list[int]] = Field(default_factory=dict, description="chosen units per layer for the strips")

    @field_validator("spaces")
    @classmethod
    def _known_spaces(cls, value: list) -> list:
        named = [space for space in value if isinstance(space, str) and space != "pixel"]
        if not named:  # pixels and checkpoints of the study: nothing to look up in torchvision
            return value
        from torchvision import models as tvm

        valid = ["pixel", *tvm.list_models(module=tvm)]
        for space in named:
            if space not in valid:
                raise ValueError(f"unknown space {space!r}.{did_you_mean(space, valid)}")
        return value


class AtlasSpec(Strict):
    """Activation atlases over training (analyze/atlas.py): per (run, layer), one UMAP layout shared by
    every epoch, a grid of whitened mean activations per epoch, and an icon drawn for each cell."""

    runs: list[str] | None = Field(None, description="default: every run")
    together: list[list[str]] = Field(
        [], description="groups of runs fitted on one map, so a cell means the same region for each, e.g. "
                        "[[clrjit-s0, keepclr-s0]]; other runs get a map of their own")
    layers: list[str] | None = Field(None, description="default: the study's last layer")
    epochs: list[int] | None = Field(None, description="default: every checkpoint (epoch 0: the random-init control)")
    data: DataSpec | None = Field(None, description="images; default: the run's data set")
    images: int = Field(2000, ge=16, description="one activation per image (conv: at one random position)")
    grid: int = Field(15, ge=2, description="g x g cells, as the seed")
    min_count: int = Field(8, ge=1, description="cells with fewer activations stay empty")
    layout: Literal["aligned", "joint"] = Field(
        "aligned", description="aligned: a UMAP per epoch, each aligned with the next through the same images "
                               "(AlignedUMAP); joint: one UMAP of all epochs together (epochs may become islands)")
    n_neighbors: int = Field(20, ge=2, description="UMAP (lucid used 20-50)")
    min_dist: float = Field(0.01, ge=0, description="UMAP (lucid used 0.01-0.05)")
    power: float = Field(2.0, ge=0, description="icon objective dot(a, v) * max(0.1, cos(a, v))^power")
    icon_size: int | None = Field(None, ge=8, description="default: the run's image size")
    pool_size: int = Field(256, ge=1, description="random images scored per icon before its Adam steps")
    adam_steps: int = Field(128, ge=0, description="lucid's recipe: 128")
    robust: bool = Field(True, description="pad, jitter, scale and rotate the icon each step (no adversarial noise)")
    batch_size: int = Field(64, ge=1, description="icons per forward pass; fixed, not measured, so the random "
                                                  "transforms repeat exactly on every machine")
    seed: int = Field(0, description="seed of the sampled positions, the UMAP layout and the icons")


class WidthSpec(Strict):
    """The width study (stages/width_study.py): supervised nets of several widths on an original task,
    frozen, read linearly on a new task (data/width_tasks.py): translated digits (place -> digit), the
    built-in shapes (blunt/pointed -> form), or an image folder with a coarse -> fine map."""

    task: Literal["digits", "shapes", "imagefolder"] = Field("digits",
        description="digits: where a digit is -> which digit; shapes: blunt/pointed -> form; imagefolder: your coarse "
                    "-> fine classes")
    root: Path | None = Field(None, description="imagefolder: <root>/<class>/<image> (or <root>/train, <root>/test)")
    coarse: dict[str, list[str]] | None = Field(
        None, description="coarse group -> its fine classes (the original task); shapes default: blunt/pointed")
    image_size: int = Field(32, ge=8, description="shapes and imagefolder")
    families: list[Literal["fc", "conv"]] = Field(["fc", "conv"],
        description="fc: fully connected at about constant parameters; conv: convolutional, its last layer's width "
                    "varies")
    widths: list[int] = Field([32, 64, 128, 256], min_length=1,
                              description="fc: depth ~ budget / width^2, so narrow widths make very deep nets")
    seeds: list[int] = Field([0, 1, 2], min_length=1, description="a net per (family, width, seed)")
    budget: int = Field(60_000, ge=1000, description="fc family: parameters each net keeps about constant")
    max_depth: int = Field(8, ge=1, description="fc family: deeper nets are capped (and have fewer parameters; "
                                                "the count is recorded)")
    epochs: int = Field(20, ge=1, description="supervised training epochs on the original task")
    train_size: int = Field(4000, ge=50, description="training images of the original task")
    test_size: int = Field(1000, ge=20, description="test images, for both tasks")
    canvas: int = Field(16, ge=10, description="digits")
    positions: int = Field(3, ge=2, description="digits: places per axis; the original task has positions² classes")

    @model_validator(mode="after")
    def _task_inputs(self):
        if self.task == "imagefolder" and (self.root is None or not self.coarse):
            raise ValueError("task imagefolder reads local files and splits their classes: set `root` and `coarse`")
        if self.task == "digits" and self.coarse:
            raise ValueError("task digits has fixed labels (place, digit): `coarse` is for shapes and imagefolder")
        return self


class AlignSpec(Strict):
    """Convergent learning: align the units of two runs, and of each epoch with a run's final one.

    See analyze/align/. Library defaults follow the seed (Li et al. 2016).
    """

    pairs: list[tuple[str, str]] | None = Field(
        None, description="[run, run] pairs to align; default: every pair of runs with the same condition")
    layers: list[str] | None = Field(None, description="default: the study's layers")
    epochs: list[int] | None = Field(None, description="epochs at which pairs are aligned; default: the last both have")
    track: list[str] | None = Field(
        None, description="runs whose every epoch is aligned with their final one; default: the pairs' runs; [] none")
    images: int | None = Field(None, ge=4, description="stimulus images used; default: all of rsa.images")
    batch_size: int = Field(64, ge=1, description="images per forward pass")
    threshold: float = Field(0.5, description="a unit whose matched correlation is below it has no partner")
    mi_samples: int = Field(10000, ge=0, description="(image, position) samples for mutual information; 0 skips it")
    bin_mass: float = Field(0.05, gt=0, le=1, description="mutual information: share of the positive values per bin")
    penalties: list[float] = Field([1.0, 0.1, 0.01, 10**-2.6, 1e-3, 1e-4, 1e-5], min_length=1,
                                   description="L1 penalties of the sparse prediction sweep (the seed's)")
    sparse_iter: int = Field(2000, ge=1, description="FISTA iterations per penalty, at most")
    cluster_penalty: float = Field(10**-2.6, ge=0, description="the penalty whose mapping is clustered hierarchically")
    tau: float = Field(0.2, ge=-1, le=1, description="spectral clustering: correlations below it are cut")
    clusters: int | None = Field(None, ge=1, description="spectral clusters; default: the eigen-gap's suggestion")
    alpha: float | None = Field(0.25, gt=0, le=1, description="clusters above this share of all units are split again")
    memory_gb: float = Field(2.0, gt=0, description="memory of one pair's all-pairs steps: mutual information is made "
                                                    "in blocks to fit it, and a pair that cannot fit is refused")

    @field_validator("penalties")
    @classmethod
    def _non_negative(cls, value: list[float]) -> list[float]:
        if min(value) < 0:
            raise ValueError(f"penalties must be >= 0, got {value}")
        return value


class TrustSpec(Strict):
    """Trust scores of every prototype (analyze/trust.py); trustworthy (faithful): passing the thresholds set."""

    k: int = Field(8, ge=1, description="top and random stimulus images per unit")
    draws: int = Field(4, ge=1, description="random small moves (shift, scale, turn) per prototype for robustness")
    judge: str | None = Field(None, description="the run whose last checkpoint embeds prototypes (plausibility); "
                                                "default: the first run of another condition, else another run")
    path: float = Field(0.1, description="mean path similarity at least this (chance 0)")
    robustness: float = Field(0.5, description="robustness at least this (1: nothing lost)")
    spectral: float | None = Field(None, gt=0, description="if set, spectral distance at most this (1: typical)")
    plausibility: float | None = Field(None, description="if set, plausibility above this (chance 0)")
