"""The study file's sections as pydantic models: the schema, apart from the Study that joins them.

It sits below everything else (it imports only `protoscope.errors`), so data sets, jobs and the
in-memory API can take a section without importing the study, and reading a study file needs no
torch: what a validator would need torch for is either listed here or imported only when asked.
Every model forbids unknown keys, so a typo is an error that names the field, and every field says
what it is (`description`): the docs' study-file reference is generated from them.

`runs` holds what is trained or read (a run, its data, optimizer and SimCLR views), `methods` the
sections of the methods, `tuning` the `tuning:` section.
"""

from .methods import (AlignSpec, AnalyzeSpec, AtlasSpec, ProbeSpec, RSASpec, SpaceSpec, SynthSpec, TrustSpec,
                      WidthSpec)
from .runs import SIMCLR_AUGMENT_ARGS, Classifier, Condition, DataSpec, OptimizerSpec, RunSpec, SimCLRSpec, Strict
from .tuning import TuningSpec

__all__ = ["SIMCLR_AUGMENT_ARGS", "AlignSpec", "AnalyzeSpec", "AtlasSpec", "Classifier", "Condition", "DataSpec",
           "OptimizerSpec", "ProbeSpec", "RSASpec", "RunSpec", "SimCLRSpec", "SpaceSpec", "Strict", "SynthSpec",
           "TrustSpec", "TuningSpec", "WidthSpec"]
