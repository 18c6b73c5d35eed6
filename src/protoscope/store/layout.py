"""Where each result lives in a study's store: the one module that spells the paths.

Every stage, analysis and report page finds its folder here, so a change of layout is a change
of this file (and of the store module that reads and writes that format).
"""

from __future__ import annotations

from pathlib import Path

ARRAYS = "arrays.zarr"  # prototypes, scores, latents, receptive fields (store/arrays.py)
ACTIVATIONS = "activations.zarr"  # the stimulus set's activations (store/activations.py)
UNIT_METRICS = "unit_metrics.zarr"  # per-unit prototype metrics (store/unit_metrics.py)
EMBEDDINGS = "embeddings.zarr"  # prototypes embedded in model spaces (store/embeddings.py)
ATLAS = "atlas.zarr"  # activation atlases (store/atlas.py)
TRUST = "trust.zarr"  # trust scores of every prototype (store/trust.py)
TUNING = "tuning.zarr"  # tuning curves and indices of every unit (store/tuning.py)
ALIGN = "align"  # netCDF results of convergent learning (store/alignment.py)
RDMS = "rsa"  # rsatoolbox HDF5 RDMs (store/rdms.py)
METRICS = "metrics"  # the tidy metrics table (store/metrics.py)
FIGURES = "figures"
LOCKS = {"checkpoints": ".protoscope-train.lock", "results": ".protoscope.lock"}  # store/lock.py; not results


def root(where) -> Path:
    """The store folder of a Study, or the folder itself."""
    return Path(where.store if hasattr(where, "store") else where)


def arrays(where) -> Path:
    return root(where) / ARRAYS


def activations(where) -> Path:
    return root(where) / ACTIVATIONS


def unit_metrics(where) -> Path:
    return root(where) / UNIT_METRICS


def embeddings(where) -> Path:
    return root(where) / EMBEDDINGS


def atlas(where) -> Path:
    return root(where) / ATLAS


def trust(where) -> Path:
    return root(where) / TRUST


def tuning(where) -> Path:
    return root(where) / TUNING


def alignment(where) -> Path:
    return root(where) / ALIGN


def rdms(where) -> Path:
    return root(where) / RDMS


def figures(where) -> Path:
    return root(where) / FIGURES


def lock(where, part: str) -> Path:
    """The file whose lock the command writing `part` of the store holds."""
    return root(where) / LOCKS[part]


def check_name(kind: str, name: str) -> str:
    """Run and layer names become folder names: no '/', not empty, no zarr-reserved prefix."""
    from ..errors import UserError

    if not isinstance(name, str) or not name or "/" in name or name in (".", "..") or name.startswith("__"):
        raise UserError(
            f"Invalid {kind} name {name!r}: it must be a non-empty string without '/', "
            "not '.'/'..' and not starting with '__'."
        )
    return name
