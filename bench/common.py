"""What the benchmarks share (not a benchmark itself): the engine's settings, made one way.

Every bench that runs the synthesis engine gets its `EngineConfig` from `engine_config`: the
conversion the evolve stage applies to a study's `synth:` section (`SynthSpec.engine_config`), from
a `synth:` section holding the given fields, so a bench measures the engine as a study runs it.
Fields a study cannot set (`backtrack`, `tol`, `cma_sigma`) are applied to the result. Benches
import it as `from common import engine_config` with bench/ on `sys.path`.
"""

from __future__ import annotations

from dataclasses import fields, replace


def engine_config(**overrides):
    """The evolve stage's `EngineConfig` for a `synth:` section with `overrides` (EngineConfig fields;
    none: the engine's defaults, which a study's defaults equal)."""
    from protoscope.specs import SynthSpec
    from protoscope.synth.engine import EngineConfig

    known = {f.name for f in fields(EngineConfig)}
    unknown = sorted(set(overrides) - known)
    if unknown:
        raise ValueError(f"not EngineConfig fields: {', '.join(unknown)} (fields: {', '.join(sorted(known))})")
    in_study = {k: v for k, v in overrides.items() if k in SynthSpec.model_fields}
    rest = {k: v for k, v in overrides.items() if k not in in_study}
    return replace(SynthSpec(**in_study).engine_config(), **rest)


def engine_overrides(items: list[str]) -> dict:
    """`FIELD=VALUE` strings (a bench's repeated `--engine` option) as EngineConfig fields, each value
    converted to its field's type: bools from 1/true/yes, tuples from comma-separated floats."""
    from protoscope.synth.engine import EngineConfig

    default, out = EngineConfig(), {}
    for item in items:
        key, _, value = item.partition("=")
        if key not in EngineConfig.__dataclass_fields__:
            fields = ", ".join(EngineConfig.__dataclass_fields__)
            raise ValueError(f"--engine {key}: not an EngineConfig field ({fields})")
        kind = type(getattr(default, key))
        if kind is bool:
            out[key] = value.lower() in ("1", "true", "yes")
        elif kind is tuple:
            out[key] = tuple(float(x) for x in value.split(","))
        else:
            out[key] = kind(value) if kind is not type(None) else float(value)
    return out


def store_arguments(parser) -> None:
    """The options of a bench that reads a store the demo made: `--store`, `--study`, `--quick`."""
    from pathlib import Path

    parser.add_argument("--store", type=Path, required=True, help="the demo's store (out/demo)")
    parser.add_argument("--study", default="demo", help="the built-in study the store was made by")
    parser.add_argument("--quick", action="store_true", help="a store of `protoscope demo --quick`: its study "
                        "shrunk the same way")


def stored_study(args):
    """The study `store_arguments` name, one thread (the benches that read a store compare numbers, not speed
    across thread counts)."""
    import torch

    from protoscope.demo import demo_study

    torch.set_num_threads(1)
    return demo_study(args.store, quick=args.quick, name=args.study)


def checkpoint_model(study, run, epoch: int | None = None):
    """`run`'s model at a stored `epoch` (default: its last), in eval mode."""
    from protoscope.nets.checkpoint_files import run_checkpoints
    from protoscope.nets.checkpoints import load_into
    from protoscope.nets.models import run_model

    files = run_checkpoints(study, run)
    return load_into(run_model(run), files[max(files) if epoch is None else epoch]).eval()
