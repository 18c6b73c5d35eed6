"""Reading a study file needs pydantic and YAML, not torch: a scheduler, a notebook cell or `--help`
that only loads a study should not pay seconds of imports for it."""

from __future__ import annotations

import inspect
import re
import subprocess
import sys
from pathlib import Path

import pytest


def _run(code: str) -> None:
    """`code` in a fresh interpreter that imports protoscope as a user does (the package's __init__ included)."""
    proc = subprocess.run([sys.executable, "-c", "import sys\n" + code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-3000:]


def test_loading_the_builtin_studies_imports_no_torch():
    _run("""
from protoscope.study import builtin_study, load_study
for name in ("demo", "digits"):
    study = load_study(builtin_study(name))
    study.synth.model_dump()
heavy = sorted(m for m in ("torch", "torchvision", "lightly", "kornia") if m in sys.modules)
assert not heavy, f"loading a study imported {heavy}"
""")


def test_the_schema_imports_only_the_errors_of_protoscope():
    _run("""
import protoscope.specs
ours = sorted(m for m in sys.modules if m.startswith("protoscope.") and not m.startswith("protoscope.specs"))
assert ours == ["protoscope.errors"], ours
""")


def test_names_of_the_study_module_still_import():
    from protoscope.study import (  # noqa: F401
        AlignSpec, AnalyzeSpec, AtlasSpec, Classifier, Condition, DataSpec, EngineConfig, OptimizerSpec, ProbeSpec,
        RSASpec, RunSpec, SimCLRSpec, SpaceSpec, Strict, Study, SynthSpec, WidthSpec, builtin_study, load_study,
        parse_study)
    from protoscope.synth.engine import EngineConfig as engine_config

    assert EngineConfig is engine_config


def test_synth_defaults_are_the_engines():
    """SynthSpec repeats EngineConfig's defaults (reading them would import torch): they must agree."""
    from protoscope.study import SynthSpec
    from protoscope.synth.engine import EngineConfig

    engine, spec = EngineConfig(), SynthSpec()
    assert spec.engine_config() == EngineConfig(cma_popsize=None, batch_size=None, memory_gb=spec.memory_gb)
    for name in ("pool_size", "cma_generations", "adam_steps", "adam_lr", "adam_betas", "patience", "memory_gb"):
        assert getattr(spec, name) == getattr(engine, name), name


def test_augment_arguments_are_lightlys():
    """The augment keys a study may set are lightly's SimCLRTransform arguments (listed, to read a study
    without importing lightly): a lightly that adds or drops one must show here."""
    from lightly.transforms import SimCLRTransform

    from protoscope.specs import SIMCLR_AUGMENT_ARGS

    params = set(inspect.signature(SimCLRTransform.__init__).parameters) - {"self", "input_size", "normalize"}
    assert set(SIMCLR_AUGMENT_ARGS) == params


@pytest.mark.parametrize("field, value, named", [
    ("arch", "my-lab.nets:make", "package.module:function"),
    ("checkpoints", "ckpt_{step}.pt", "exactly one of {epoch} or {epoch_index}"),
    ("checkpoints", "ckpt_{epoch}_{epoch_index}.pt", "exactly one of"),
    ("checkpoints", "ckpt_{epoc}.pt", "unknown placeholder {epoc}"),
    ("checkpoints", "ckpt_{epoch}.npz", "must end with one of"),
    ("checkpoints", "sub/ckpt_{epoch}.pt", "without '/'"),
    ("layouts", {"blocks.3": "CHW"}, "NHWC"),
], ids=["factory-name", "no-epoch", "two-epochs", "placeholder", "suffix", "folder", "layout"])
def test_model_fields_are_checked_when_the_study_loads(tmp_path, field, value, named):
    from protoscope.errors import UserError
    from protoscope.study import parse_study

    raw = {"name": "s", "store": str(tmp_path), "runs": [{"name": "r", "path": str(tmp_path), field: value}]}
    with pytest.raises(UserError, match=re.escape(named)):
        parse_study(raw, tmp_path / "study.yaml")


def test_runs_trained_before_the_model_fields_existed_still_resume():
    """run.yaml compares training_fields: new fields at their defaults add no key to it."""
    from protoscope.specs import RunSpec

    fields = RunSpec().training_fields()
    assert not {"arch_options", "forward_kwargs", "head", "layouts", "checkpoints"} & set(fields)
    assert "name" not in fields["optimizer"]
    changed = RunSpec(arch_options={"dropout": 0.1}, optimizer={"name": "adamw"}).training_fields()
    assert changed["arch_options"] == {"dropout": 0.1} and changed["optimizer"]["name"] == "adamw"


EXAMPLES = sorted((Path(__file__).parents[1] / "examples").rglob("*.yaml"))


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: str(p.relative_to(p.parents[1])))
def test_example_studies_load_and_name_real_layers(path):
    """Every example study (the seed papers' at full scale among them) validates, and each layer it
    names — the studied ones and the probe's — is a layer of every run's network."""
    from protoscope.nets.layers import check_layers
    from protoscope.nets.models import run_model

    from protoscope.study import load_study

    study = load_study(path)
    for run in study.runs:
        named = list(study.layers) + ([study.probe.layer] if study.probe.layer else [])
        check_layers(run_model(run), named)


def test_the_seed_study_is_what_the_scale_model_projects():
    """docs/how-to/seed-scale.md quotes bench/scale_model.py for examples/seed/prototypes_stl10.yaml:
    the two must describe the same experiment (runs x checkpoints x repeats, and 960 channels)."""
    import importlib.util

    root = Path(__file__).parents[1]
    spec = importlib.util.spec_from_file_location("scale_model", root / "bench" / "scale_model.py")
    scale = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(scale)
    from protoscope.study import load_study

    study = load_study(root / "examples" / "seed" / "prototypes_stl10.yaml")
    assert scale.SEED == {"runs": len(study.runs), "checkpoints": study.runs[0].epochs + 1,
                          "repeats": study.synth.repeats}
    from protoscope.nets.models import run_model

    model = run_model(study.runs[0])
    channels = sum(dict(model.named_modules())[layer][-1].conv2.out_channels for layer in study.layers)
    assert channels == 960


def test_every_study_field_says_what_it_is():
    """The docs' study-file reference is generated from the models (docs/gen_pages.py): a field without a
    description would be a row that tells the reader nothing. The models are the ones that page lists."""
    import importlib.util

    from protoscope.study import Study

    spec = importlib.util.spec_from_file_location("gen_pages", Path(__file__).parents[1] / "docs" / "gen_pages.py")
    gen_pages = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(gen_pages)  # named gen_pages: it writes no page
    models = gen_pages.models_of(Study, [])
    bare = [f"{model.__name__}.{key}" for model in models for key, field in model.model_fields.items()
            if not (field.description or "").strip()]
    assert len(models) >= 15
    assert not bare, f"fields without a description: {bare}"
