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

Condition = Literal["clrjit", "keepclr"]
Classifier = Literal["logreg", "svm", "adam"]


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class DataSpec(Strict):
    """Where images come from. `shapes` is built in; the others read a local root."""

    name: Literal["shapes", "stl10", "cifar10", "imagefolder"] = "shapes"
    root: Path | None = None
    image_size: int = Field(96, ge=8)
    epoch_size: int = Field(4096, ge=1, description="shapes only: images per epoch of the procedural stream")
    seed: int = 0

    @model_validator(mode="after")
    def _root_needed(self):
        if self.name != "shapes" and self.root is None:
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

    def training_fields(self) -> dict[str, Any]:
        """What determines the trained weights (compared when resuming)."""
        return self.model_dump(mode="json", exclude={"name", "path", "epochs"})


class ProbeSpec(Strict):
    """Linear probes on frozen, pooled features of every checkpoint."""

    layer: str | None = Field(None, description="default: the architecture's pooled feature layer")
    classifiers: list[Classifier] = ["logreg", "svm", "adam"]
    data: DataSpec | None = Field(None, description="default: the run's data set")
    train_size: int = Field(2000, ge=8, description="shapes only")
    test_size: int = Field(1000, ge=4, description="shapes only")
    adam_epochs: int = Field(250, ge=1)


class SynthSpec(Strict):
    """Prototype synthesis: which generator, objective and budgets; see synth/engine.py."""

    generator: str = "fourier"
    generator_options: dict[str, Any] = Field(default_factory=dict, description="e.g. cutoff, weights_path")
    objective: Literal["centre", "mean"] = "centre"
    image_size: int | None = Field(None, ge=8, description="default: the run's image size")
    epochs: list[int] | None = Field(None, description="default: every checkpoint")
    repeats: int = Field(2, ge=1)
    seed: int = Field(42, description="repeat r uses seed + r, the same at every epoch")
    pool_size: int = Field(512, ge=1)
    cma_generations: int = Field(10, ge=0)
    cma_popsize: int | None = Field(None, ge=2)
    adam_steps: int = Field(50, ge=0)
    adam_lr: float = Field(0.05, gt=0)
    patience: int = Field(8, ge=1)
    batch_size: int | None = Field(None, ge=1)
    memory_gb: float = Field(2.0, gt=0)
    crop: bool = Field(True, description="compute only the input region the centre unit sees")
    rf: Literal["layer", "unit", "none"] = "layer"
    rf_samples: int = Field(500, ge=1)

    def engine_config(self):
        from .synth.engine import EngineConfig

        return EngineConfig(
            pool_size=self.pool_size, cma_generations=self.cma_generations, cma_popsize=self.cma_popsize,
            adam_steps=self.adam_steps, adam_lr=self.adam_lr, patience=self.patience,
            batch_size=self.batch_size, memory_gb=self.memory_gb,
        )


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

    @model_validator(mode="after")
    def _unique_names(self):
        names = [r.name for r in self.runs]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ValueError(f"run names must be unique, repeated: {dupes}; set `name` (a template like '{{condition}}-w{{width}}-s{{seed}}')")
        return self

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
    probe_data = raw.get("probe", {}).get("data") if isinstance(raw.get("probe"), dict) else None
    if isinstance(probe_data, dict) and probe_data.get("root") is not None:
        probe_data["root"] = fix(probe_data["root"])


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
        raise UserError(f"{path}: not valid YAML: {exc}") from None
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
