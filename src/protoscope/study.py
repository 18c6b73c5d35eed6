"""The study file: which runs, which layers, which analyses, and where results go.

A study is YAML validated by pydantic; its sections' models are in `specs` (re-exported here), this
module joins them into a `Study` and reads the file. `defaults` holds what runs share; each entry of
`runs` overrides it, and a list in `condition` or `seed` expands to one run per combination.
Relative paths are relative to the file. Library defaults follow the seed paper (SimCLR on STL10 at
96 px); the demo's study overrides them with a recipe sized for a laptop CPU.
"""

from __future__ import annotations

import copy
import itertools
import os
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import Field, ValidationError, field_validator

from .errors import UserError
from .specs import (SIMCLR_AUGMENT_ARGS, AlignSpec, AnalyzeSpec, AtlasSpec, Classifier, Condition, DataSpec,
                    OptimizerSpec, ProbeSpec, RSASpec, RunSpec, SimCLRSpec, SpaceSpec, Strict, SynthSpec, TrustSpec,
                    TuningSpec, WidthSpec)

__all__ = [
    "SIMCLR_AUGMENT_ARGS", "TrustSpec", "AlignSpec", "AnalyzeSpec", "AtlasSpec", "Classifier", "Condition", "DataSpec",
    "EngineConfig", "OptimizerSpec", "ProbeSpec", "RSASpec", "RunSpec", "SimCLRSpec", "SpaceSpec", "Strict", "Study",
    "SynthSpec", "TuningSpec", "WidthSpec", "builtin_study", "load_study", "parse_study", "study_for_run_dir",
]


def __getattr__(name: str):
    # `from protoscope.study import EngineConfig` worked when this module imported the engine; it still
    # does, but only the code that asks for it pays for torch
    if name == "EngineConfig":
        from .synth.engine import EngineConfig

        return EngineConfig
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


class Study(Strict):
    """A whole study file, validated: what every stage takes."""

    name: str = Field(description="the study's name: the site's title and the metrics' study")
    question: str | None = Field(None, description="what the study asks, in a sentence (the site's overview shows it)")
    store: Path = Field(description="the folder of every result; relative paths are relative to the study file")
    device: str = Field("auto", description="auto (a GPU when there is one), cpu, cuda or cuda:N")
    precision: Literal["auto", "bf16", "float32"] = Field("auto",
        description="training: auto is bf16 autocast where the hardware does bf16 natively, else float32")
    workers: int = Field(1, ge=0, description="data-loading processes for training")
    layers: list[str] = Field(["layer1", "layer2", "layer3", "layer4"],
        description="the layers every method studies: module names or traced nodes (`protoscope layers` lists them)")
    runs: list[RunSpec] = Field(
        description="trained here, or checkpoints you bring (`path`); a list under condition or seed expands to a run "
                    "each")
    probe: ProbeSpec = Field(ProbeSpec(), description="linear probes")
    synth: SynthSpec = Field(SynthSpec(), description="prototype synthesis")
    rsa: RSASpec = Field(RSASpec(), description="RSA trajectories")
    analyze: AnalyzeSpec = Field(AnalyzeSpec(), description="prototype metrics")
    align: AlignSpec = Field(AlignSpec(), description="convergent learning")
    trust: TrustSpec = Field(TrustSpec(), description="trust scores of the prototypes")
    atlas: AtlasSpec | None = Field(None, description="activation atlases; `protoscope run` draws them when set")
    tuning: TuningSpec | None = Field(None,
        description="tuning curves of every unit; `protoscope run` measures them when set")
    width: WidthSpec | None = Field(None, description="the width study; `protoscope run` runs it when set")

    @field_validator("store")
    @classmethod
    def _store_is_a_folder(cls, store: Path) -> Path:
        # a file here would otherwise surface as NotADirectoryError in the middle of the first stage
        where = store
        try:
            while not where.exists() and where.parent != where:
                where = where.parent
            is_file = where.exists() and not where.is_dir()
        except OSError:  # unreadable: the stage that writes there says so
            return store
        if is_file:
            raise ValueError(f"{store} is a file; the store is a folder" if where == store
                             else f"{store} is inside {where}, which is a file; the store is a folder")
        return store

    @field_validator("layers")
    @classmethod
    def _some_layers(cls, layers: list[str]) -> list[str]:
        # every analysis reads these: without one, `run` would train and probe before failing
        if not layers:
            raise ValueError("a study needs at least one layer, e.g. [layer1, layer4]; "
                             "`protoscope layers STUDY` lists them")
        return layers

    @field_validator("runs")
    @classmethod
    def _unique_names(cls, runs: list[RunSpec]) -> list[RunSpec]:
        names = [r.name for r in runs]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ValueError(f"run names must be unique, repeated: {dupes}; set `name` (a template like '{{condition}}-w{{width}}-s{{seed}}')")
        trained = [r.name for r in runs if r.head == "keep" and r.path is None]
        if trained:  # in defaults it is fine when every run is brought
            raise ValueError(f"run {trained[0]!r}: head: keep studies checkpoints you bring (set `path`); SimCLR "
                             "trains a backbone")
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
        empty = [k for k, values in axes.items() if not values]
        if empty:  # else the entry quietly expands to no run at all
            raise _FieldError(f"runs[{index}].{empty[0]}", "a list expands to one run per value: give at least one")
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
        return os.path.normpath(p if p.is_absolute() else base / p)  # "examples/../out" printed as "out"

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


def study_for_run_dir(run_dir: Path, arch: str | None = None, store: Path | None = None,
                      overrides: dict | None = None) -> Study:
    """A one-run study for a folder of checkpoints (`protoscope evolve --run-dir`), so a run trained
    elsewhere goes through the same stages; run.yaml, as training writes it, fills the architecture."""
    folder = run_dir.resolve()
    if not folder.is_dir():
        raise UserError(f"Run folder not found: {folder}")
    info = {}
    if (folder / "run.yaml").is_file():
        info = yaml.safe_load((folder / "run.yaml").read_text()) or {}
    run = {"name": folder.name, "path": str(folder)}
    for key in ("arch", "width", "small_input", "condition", "seed"):
        if key in info:
            run[key] = info[key]
    training = info.get("training", {})
    for key in ("arch_options", "forward_kwargs"):  # written by training only when set
        if key in training:
            run[key] = training[key]
    if isinstance(training.get("data"), dict) and "image_size" in training["data"]:
        run["data"] = {"name": "shapes", "image_size": training["data"]["image_size"]}
    if arch:
        run["arch"] = arch
    if "arch" not in run:
        raise UserError(f"{folder} has no run.yaml; say which architecture its checkpoints are with --arch.")
    raw = {"name": folder.name, "store": str((store or folder / "protoscope").resolve()), "runs": [run]}
    return parse_study(raw, run_dir / "run.yaml", overrides)
