"""RDMs on disk: rsatoolbox's own HDF5 format, one file per (run, layer), ``STORE/rsa/<run>/<layer>.hdf5``."""

from __future__ import annotations

from pathlib import Path

from rsatoolbox.rdm import RDMs, concat, load_rdm

from ..atomic import atomic_path
from ..errors import UserError
from . import layout


def rdm_path(store, run: str, layer: str) -> Path:
    return layout.rdms(store) / run / f"{layer}.hdf5"


def save_rdms(rdms: RDMs, path: Path) -> None:
    """rsatoolbox's HDF5 format, written atomically."""
    with atomic_path(path) as tmp:
        rdms.save(str(tmp), file_type="hdf5", overwrite=True)


def load_rdms(store, runs: list[str] | None = None, layers: list[str] | None = None) -> RDMs:
    """The stored RDMs of a study (a Study or its store folder), selectable by run and layer.

    One rsatoolbox `RDMs` with `run`, `epoch`, `layer` rdm descriptors; select further with
    ``rdms.subset("epoch", 5)``.
    """
    root = layout.rdms(store)
    files = sorted(root.glob("*/*.hdf5")) if root.is_dir() else []
    files = [f for f in files if (runs is None or f.parent.name in runs) and (layers is None or f.stem in layers)]
    if not files:
        raise UserError(f"No RDMs stored under {root}" + (f" for runs {runs}" if runs else "")
                        + (f" and layers {layers}" if layers else "") + "; run `protoscope rsa` first.")
    loaded = [load_rdm(str(f), file_type="hdf5") for f in files]
    for rdm in loaded:  # hdf5 gives numpy scalars back; plain values select and compare as users expect
        rdm.rdm_descriptors = {k: [v.item() if hasattr(v, "item") else v for v in vals]
                               for k, vals in rdm.rdm_descriptors.items()}
    return concat(loaded) if len(loaded) > 1 else loaded[0]
