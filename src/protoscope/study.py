"""The study file: which runs, which layers, which analyses, and where results go.

A study is YAML validated by pydantic. Every model forbids unknown keys, so a
typo is an error that names the file and the field. `defaults` holds what runs
share; each entry of `runs` overrides it, and a list in `condition` or `seed`
expands to one run per combination. Relative paths are relative to the file.
Library defaults follow the seed paper (SimCLR on STL10 at 96 px); the demo's
study overrides them with a recipe sized for a laptop CPU.
"""

from __future__ import annotations

import copy
import inspect
import itertools
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from .errors import UserError
from .synth.engine import EngineConfig

Condition = Literal["clrjit", "keepclr"]
Classifier = Literal["logreg", "svm", "adam"]


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class DataSpec(Strict):
    """Where images come from. `shapes` and `digits` (scikit-learn's handwritten digits, in colour) are
    built in; the others read a local root."""

    name: Literal["shapes", "digits", "stl10", "cifar10", "imagefolder"] = "shapes"
    root: Path | None = None
    image_size: int = Field(96, ge=8)
    epoch_size: int = Field(4096, ge=1, description="shapes and digits: images per epoch of the built-in stream")
    seed: int = 0

    @model_validator(mode="after")
    def _root_needed(self):
        if self.name not in ("shapes", "digits") and self.root is None:
            raise ValueError(f"data set {self.name!r} reads local files: set `root` to its folder")
        return self


class OptimizerSpec(Strict):
    """SGD with momentum, linear warm-up, then cosine annealing to zero."""

    lr: float = Field(0.06, gt=0)
    momentum: float = Field(0.9, ge=0, lt=1)
    weight_decay: float = Field(5e-4, ge=0)
    warmup_steps: int = Field(0, ge=0)
    batch_size: int = Field(1024, ge=2)


class SimCLRSpec(Strict):
    temperature: float = Field(0.5, gt=0)
    hidden_dim: int | None = Field(None, description="projection head hidden width; default: the feature width")
    projection_dim: int = Field(128, ge=1)
    augment: dict[str, Any] = Field(default_factory=dict, description="extra lightly SimCLRTransform arguments")

    @field_validator("augment")
    @classmethod
    def _known_augment_args(cls, value: dict[str, Any]) -> dict[str, Any]:
        from lightly.transforms import SimCLRTransform

        valid = set(inspect.signature(SimCLRTransform.__init__).parameters) - {"self", "input_size", "normalize"}
        reserved = {"cj_prob", "random_gray_scale"}  # set by the condition
        for key in value:
            if key in reserved:
                raise ValueError(f"{key!r} is set by the run's condition (clrjit/keepclr), not by augment")
            if key not in valid:
                raise ValueError(f"unknown augmentation {key!r}; valid: {', '.join(sorted(valid - reserved))}")
        return value


class RunSpec(Strict):
    """One training sequence. With `path`, an existing run folder: nothing is trained."""

    name: str = "{condition}-s{seed}"
    condition: Condition = "clrjit"
    seed: int = 0
    arch: str = "resnet18"
    width: float = Field(1.0, gt=0)
    small_input: bool = False
    data: DataSpec = DataSpec()
    epochs: int = Field(100, ge=0)
    optimizer: OptimizerSpec = OptimizerSpec()
    simclr: SimCLRSpec = SimCLRSpec()
    path: Path | None = None

    @field_validator("name")
    @classmethod
    def _path_component(cls, value: str) -> str:
        # the name becomes a folder (STORE/runs/<name>), a metrics key and a Zarr group; '~' joins align pairs
        bad = [c for c in ("/", "\\", "~") if c in value]
        if not value.strip() or value in (".", "..") or value.startswith("__") or bad or not value.isprintable():
            raise ValueError(f"run name {value!r} must be usable as a folder name: not empty, '.' or '..', without "
                             "'/', '\\' or '~', not starting with '__'")
        return value

    @field_validator("arch")
    @classmethod
    def _known_arch(cls, value: str) -> str:
        from .errors import did_you_mean
        from .nets.models import available_architectures

        valid = available_architectures()
        if value not in valid:
            raise ValueError(f"unknown architecture {value!r}.{did_you_mean(value, valid)}")
        return value

    @model_validator(mode="after")
    def _resnet18_options(self):
        if self.arch != "resnet18" and (self.width != 1.0 or self.small_input):
            raise ValueError(f"width and small_input are only supported for resnet18, not {self.arch!r}")
        return self

    def training_fields(self) -> dict[str, Any]:
        """What determines the trained weights (compared when resuming)."""
        return self.model_dump(mode="json", exclude={"name", "path", "epochs"})


class ProbeSpec(Strict):
    """Linear probes on frozen, pooled features of every checkpoint."""

    layer: str | None = Field(None, description="default: the architecture's pooled feature layer")
    classifiers: list[Classifier] = ["logreg", "svm", "adam"]
    data: DataSpec | None = Field(None, description="default: the run's data set")
    train_size: int = Field(2000, ge=8, description="shapes: images generated; digits: at most the 1297 training scans")
    test_size: int = Field(1000, ge=4, description="shapes: images generated; digits: at most the 500 held-out scans")
    adam_epochs: int = Field(250, ge=1)


_ENGINE = EngineConfig()


class SynthSpec(Strict):
    """Prototype synthesis: which generator, objective and budgets; see synth/engine.py."""

    generator: str = "fourier"
    generator_options: dict[str, Any] = Field(default_factory=dict, description="e.g. cutoff, weights_path")
    objective: Literal["centre", "mean"] = "centre"
    image_size: int | None = Field(None, ge=8, description="default: the run's image size")
    epochs: list[int] | None = Field(None, description="default: every checkpoint")
    repeats: int = Field(2, ge=1)
    seed: int = Field(42, description="repeat r uses seed + r, the same at every epoch")
    # the engine's own defaults (synth/engine.py says why they are what they are)
    pool_size: int = Field(_ENGINE.pool_size, ge=1)
    cma_generations: int = Field(_ENGINE.cma_generations, ge=0)
    cma_popsize: int | None = Field(None, ge=2)
    adam_steps: int = Field(_ENGINE.adam_steps, ge=0)
    adam_lr: float = Field(_ENGINE.adam_lr, gt=0, description="in units of the generator's latent scale")
    adam_betas: tuple[float, float] = Field(_ENGINE.adam_betas, description="Adam's moment decay rates")
    patience: int = Field(_ENGINE.patience, ge=1)
    batch_size: int | None = Field(None, ge=1)
    memory_gb: float = Field(2.0, gt=0)
    crop: bool = Field(True, description="compute only the input region the centre unit sees")
    rf: Literal["layer", "unit", "none"] = "layer"
    rf_samples: int = Field(500, ge=1)

    def engine_config(self) -> EngineConfig:
        return EngineConfig(
            pool_size=self.pool_size, cma_generations=self.cma_generations, cma_popsize=self.cma_popsize,
            adam_steps=self.adam_steps, adam_lr=self.adam_lr, adam_betas=self.adam_betas, patience=self.patience,
            batch_size=self.batch_size, memory_gb=self.memory_gb,
        )


class RSASpec(Strict):
    """Representational similarity over training: RDMs of one fixed probe set per run, epoch and layer.

    Every run sees the same probe images, so RDMs compare across runs as well as epochs.
    """

    layers: list[str] | None = Field(None, description="default: the study's layers")
    epochs: list[int] | None = Field(None, description="default: every checkpoint")
    data: DataSpec | None = Field(None, description="probe images; default: the first run's data set")
    images: int = Field(400, ge=4, description="probe images (class-balanced)")
    features: Literal["mean", "flatten"] = Field("mean", description="conv maps averaged over space, or flattened")
    distance: Literal["correlation", "euclidean", "crossnobis"] = "correlation"
    folds: int = Field(2, ge=2, description="crossnobis: interleaved partitions of each category's images")
    compare: list[Literal["pearson", "spearman", "cosine"]] = Field(
        ["pearson", "spearman"], min_length=1, description="RDM comparison methods for the trajectory metrics")
    snapshots: list[int] | None = Field(None, description="epochs drawn as RDMs; default: first, middle, last")
    batch_size: int = Field(256, ge=1)


class SpaceSpec(Strict):
    """An embedding space: a torchvision model with local weights, or a checkpoint of this study.

    `model` names a torchvision model (its weights from `weights`: a file, or the name of one of its
    weight sets, read from the torch hub cache); `run` (+ `epoch`) names a checkpoint of the study.
    """

    model: str | None = Field(None, description="torchvision name, e.g. resnet50, vgg16, mobilenet_v2")
    weights: str = Field("IMAGENET1K_V1", description="a weights file, or a weight-set name found in the torch hub cache")
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
    distances: list[Literal["mse", "cosine"]] = Field(["mse", "cosine"], min_length=1)
    masked: bool = Field(True, description="multiply each prototype by its receptive-field mask first")
    exclude_silent: bool = Field(True, description="leave out units no image excited")
    batch_size: int = Field(256, ge=1, description="images per embedding forward pass")
    strip_units: int = Field(8, ge=1, description="units per development strip, picked by rate of change")
    units: dict[str, list[int]] = Field(default_factory=dict, description="chosen units per layer for the strips")

    @field_validator("spaces")
    @classmethod
    def _known_spaces(cls, value: list) -> list:
        from torchvision import models as tvm

        from .errors import did_you_mean

        valid = ["pixel", *tvm.list_models(module=tvm)]
        for space in value:
            if isinstance(space, str) and space not in valid:
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
    pool_size: int = Field(256, ge=1)
    adam_steps: int = Field(128, ge=0, description="lucid's recipe: 128")
    robust: bool = Field(True, description="pad, jitter, scale and rotate the icon each step (no adversarial noise)")
    batch_size: int = Field(64, ge=1, description="icons per forward pass; fixed, not measured, so the random "
                                                  "transforms repeat exactly on every machine")
    seed: int = 0


class WidthSpec(Strict):
    """The width study (train/width_jobs.py): supervised nets of several widths on an original task,
    frozen, read linearly on a new task (data/width_tasks.py): translated digits (place -> digit), the
    built-in shapes (blunt/pointed -> form), or an image folder with a coarse -> fine map."""

    task: Literal["digits", "shapes", "imagefolder"] = "digits"
    root: Path | None = Field(None, description="imagefolder: <root>/<class>/<image> (or <root>/train, <root>/test)")
    coarse: dict[str, list[str]] | None = Field(
        None, description="coarse group -> its fine classes (the original task); shapes default: blunt/pointed")
    image_size: int = Field(32, ge=8, description="shapes and imagefolder")
    families: list[Literal["fc", "conv"]] = ["fc", "conv"]
    widths: list[int] = Field([32, 64, 128, 256], min_length=1,
                              description="fc: depth ~ budget / width^2, so narrow widths make very deep nets")
    seeds: list[int] = Field([0, 1, 2], min_length=1)
    budget: int = Field(60_000, ge=1000, description="fc family: parameters each net keeps about constant")
    max_depth: int = Field(8, ge=1, description="fc family: deeper nets are capped (and have fewer parameters; "
                                                "the count is recorded)")
    epochs: int = Field(20, ge=1, description="supervised training epochs on the original task")
    train_size: int = Field(4000, ge=50)
    test_size: int = Field(1000, ge=20)
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
    images: int | None = Field(None, ge=4, description="probe images used; default: all of rsa.images")
    batch_size: int = Field(64, ge=1)
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

    @field_validator("penalties")
    @classmethod
    def _non_negative(cls, value: list[float]) -> list[float]:
        if min(value) < 0:
            raise ValueError(f"penalties must be >= 0, got {value}")
        return value


class Study(Strict):
    name: str
    store: Path
    device: str = "auto"
    precision: Literal["auto", "bf16", "float32"] = "auto"
    workers: int = Field(1, ge=0, description="data-loading processes for training")
    layers: list[str] = ["layer1", "layer2", "layer3", "layer4"]
    runs: list[RunSpec]
    probe: ProbeSpec = ProbeSpec()
    synth: SynthSpec = SynthSpec()
    rsa: RSASpec = RSASpec()
    analyze: AnalyzeSpec = AnalyzeSpec()
    align: AlignSpec = AlignSpec()
    atlas: AtlasSpec | None = Field(None, description="activation atlases; `protoscope run` draws them when set")
    width: WidthSpec | None = Field(None, description="the width study; `protoscope run` runs it when set")

    @field_validator("runs")
    @classmethod
    def _unique_names(cls, runs: list[RunSpec]) -> list[RunSpec]:
        names = [r.name for r in runs]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ValueError(f"run names must be unique, repeated: {dupes}; set `name` (a template like '{{condition}}-w{{width}}-s{{seed}}')")
        return runs

    def run_dir(self, run: RunSpec) -> Path:
        return run.path if run.path is not None else self.store / "runs" / run.name

    def run(self, name: str) -> RunSpec:
        for r in self.runs:
            if r.name == name:
                return r
        raise UserError(f"No run named {name!r} in study {self.name!r}. Runs: {', '.join(r.name for r in self.runs)}")


# --- loading -----------------------------------------------------------------


def _deep_merge(base: dict, override: dict) -> dict:
    out = copy.deepcopy(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _deep_merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def _expand_runs(defaults: dict, runs: list) -> list[dict]:
    """Merge defaults into each run and expand list-valued condition/seed."""
    expanded = []
    for index, entry in enumerate(runs):
        if not isinstance(entry, dict):
            raise _FieldError(f"runs[{index}]", "each run must be a mapping")
        merged = _deep_merge(defaults, entry)
        axes = {k: merged[k] for k in ("condition", "seed") if isinstance(merged.get(k), list)}
        for combo in itertools.product(*axes.values()) if axes else [()]:
            run = dict(merged, **dict(zip(axes, combo)))
            fields = {k: run.get(k, RunSpec.model_fields[k].default) for k in ("condition", "seed", "arch", "width")}
            try:
                run["name"] = str(run.get("name", RunSpec.model_fields["name"].default)).format(**fields)
            except (KeyError, IndexError) as exc:
                raise _FieldError(f"runs[{index}].name", f"unknown placeholder {exc}; use condition, seed, arch, width") from None
            expanded.append((index, run))
    return expanded


class _FieldError(Exception):
    def __init__(self, where: str, message: str):
        super().__init__(f"{where}: {message}")


def _format_validation(path: Path, exc: ValidationError, prefix: str = "") -> UserError:
    lines = []
    for err in exc.errors():
        loc = prefix + "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in err["loc"])
        loc = loc.lstrip(".") or "(top level)"
        msg = err["msg"].removeprefix("Value error, ")
        lines.append(f"{loc}: {msg}")
    return UserError(f"{path}: invalid study: " + "; ".join(lines))


def _resolve_paths(raw: dict, base: Path) -> None:
    def fix(value):
        if value is None:
            return None
        p = Path(value).expanduser()
        return str(p if p.is_absolute() else base / p)

    if "store" in raw:
        raw["store"] = fix(raw["store"])
    run_likes = [raw.get("defaults")] + list(raw.get("runs") or [])
    for run in run_likes:
        if isinstance(run, dict):
            if run.get("path") is not None:
                run["path"] = fix(run["path"])
            if isinstance(run.get("data"), dict) and run["data"].get("root") is not None:
                run["data"]["root"] = fix(run["data"]["root"])
    analyze = raw.get("analyze")
    for space in (analyze.get("spaces") or []) if isinstance(analyze, dict) else []:
        weights = space.get("weights") if isinstance(space, dict) else None
        if isinstance(weights, str) and ("/" in weights or Path(weights).suffix in (".pt", ".pth", ".safetensors")):
            space["weights"] = fix(weights)  # a file, not a weight-set name
    for section in ("probe", "rsa", "atlas"):
        section_data = raw.get(section, {}).get("data") if isinstance(raw.get(section), dict) else None
        if isinstance(section_data, dict) and section_data.get("root") is not None:
            section_data["root"] = fix(section_data["root"])
    width = raw.get("width")
    if isinstance(width, dict) and width.get("root") is not None:
        width["root"] = fix(width["root"])


def parse_study(raw: Any, path: Path, overrides: dict | None = None) -> Study:
    """Validate a study given as a dict (from YAML); errors name `path` and the field."""
    if not isinstance(raw, dict):
        raise UserError(f"{path}: a study must be a YAML mapping, got {type(raw).__name__}")
    raw = _deep_merge(raw, overrides or {})
    defaults = raw.pop("defaults", {}) or {}
    if not isinstance(defaults, dict):
        raise UserError(f"{path}: defaults: must be a mapping")
    try:
        RunSpec.model_validate({k: v for k, v in defaults.items() if k not in ("condition", "seed")})
    except ValidationError as exc:
        raise _format_validation(path, exc, "defaults") from None
    runs_raw = raw.get("runs")
    if not isinstance(runs_raw, list) or not runs_raw:
        raise UserError(f"{path}: runs: a study needs a non-empty list of runs")
    try:
        expanded = _expand_runs(defaults, runs_raw)
    except _FieldError as exc:
        raise UserError(f"{path}: invalid study: {exc}") from None
    runs = []
    for index, run in expanded:
        try:
            runs.append(RunSpec.model_validate(run))
        except ValidationError as exc:
            raise _format_validation(path, exc, f"runs[{index}]") from None
    raw["runs"] = runs
    try:
        return Study.model_validate(raw)
    except ValidationError as exc:
        raise _format_validation(path, exc) from None


def load_study(path: str | Path, overrides: dict | None = None) -> Study:
    """Read and validate a study YAML file."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"Study file not found: {path}")
    try:
        raw = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        what = ", ".join(str(p) for p in (getattr(exc, "context", None), getattr(exc, "problem", None)) if p)
        raise UserError(f"{path}: not valid YAML{where}: {what or ' '.join(str(exc).split())}") from None
    if isinstance(raw, dict):
        _resolve_paths(raw, path.parent.resolve())
        if overrides and "store" in overrides:
            overrides = dict(overrides, store=str(Path(overrides["store"]).resolve()))
    return parse_study(raw, path, overrides)


def builtin_study(name: str) -> Path:
    """Path of a study shipped with the package (the demo)."""
    from importlib.resources import files

    path = Path(str(files("protoscope") / "studies" / f"{name}.yaml"))
    if not path.is_file():
        raise UserError(f"No built-in study {name!r}.")
    return path
