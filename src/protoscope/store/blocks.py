"""One block store behind every Zarr store of a study: a group of named arrays, written a block at a time.

A **block group** is a Zarr v3 group with a schema (`Schema`: named arrays with
named dims, whose leading *block dims* index blocks) and settings (the group's
attributes). Its life:

- ``create(settings)`` — before any job runs (a stage's `prepare`): sweeps the
  ``*.partial`` files a killed Zarr write leaves (those older than a few
  seconds: a live writer's are left alone), records the settings once,
  race-free (the group's ``zarr.json`` is written to a temporary file and
  hard-linked into place only if absent, so of several workers starting at
  once exactly one wins and the others compare against it), refuses other
  settings with a UserError naming the store and each setting, and creates
  the arrays (one chunk per block; never a shard shared by blocks, since
  concurrent writes to one shard lose data);
- ``write(block, values)`` — inside a job: un-marks the block if it was done,
  writes its data, then sets ``done[block]``: "done" always means one complete
  write, whatever killed the process in between;
- ``done()`` / ``is_done(block)`` / ``read(name, block)`` — readers.

Arrays are never created inside `write`: a job only fills chunks, so jobs on
different machines write disjoint files.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import zarr
from zarr.errors import ContainsArrayError

from ..atomic import link_if_absent
from ..errors import UserError

DONE = "done"


@dataclass(frozen=True)
class Array:
    """One array of a schema: `dims` (block dims first), `shape`, dtype, fill value and codec."""

    dims: tuple[str, ...]
    shape: tuple[int, ...]
    dtype: str
    fill: object = None
    compressors: object = "auto"
    description: str = ""


@dataclass(frozen=True)
class Schema:
    """The arrays of a block group; the first `blocks` dims of each index blocks (one chunk each)."""

    arrays: dict[str, Array]
    blocks: int
    coords: dict[str, np.ndarray | tuple] = field(default_factory=dict)  # name -> values, or (dims, values)
    done: str = DONE  # the marker array's name (a group may hold two schemas, each with its own marker)

    def block_shape(self) -> tuple[int, ...]:
        first = next(iter(self.arrays.values()))
        return first.shape[: self.blocks]

    def block_dims(self) -> tuple[str, ...]:
        return next(iter(self.arrays.values())).dims[: self.blocks]


def jsonable(value):
    """`value` as JSON gives it back (tuples as lists, numpy numbers as Python ones): what is compared."""
    return json.loads(json.dumps(value, sort_keys=True, default=str))


def settings_diff(stored: dict, wanted: dict, prefix: str = "") -> str:
    """'' when equal, else each differing key with its stored and new value."""
    stored, wanted = jsonable(stored), jsonable(wanted)
    keys = sorted(k for k in set(stored) | set(wanted) if stored.get(k) != wanted.get(k))
    return "; ".join(f"{prefix}{k}: stored {stored.get(k, '<unset>')!r}, now {wanted.get(k, '<unset>')!r}"
                     for k in keys)


PARTIAL_GRACE_S = 10.0


def sweep_partial(folder: Path, grace: float = PARTIAL_GRACE_S) -> int:
    """Delete the ``*.partial`` files a killed Zarr write left under `folder`; returns how many.

    Only files untouched for `grace` seconds: a live writer (another worker creating or writing
    the same group) finishes a chunk in far less, and must not lose its file under it."""
    if not folder.is_dir():
        return 0
    import time

    swept = 0
    for path in folder.rglob("*.partial"):
        try:
            if time.time() - path.stat().st_mtime >= grace:
                path.unlink()
                swept += 1
        except FileNotFoundError:  # its writer just finished
            pass
    return swept


def ensure_group(root: Path, folder: Path, attributes: dict | None = None) -> dict:
    """A Zarr v3 group at `folder` inside the store at `root` (and every group between them), created
    race-free; returns the attributes the group holds (this call's, or those of whoever was first)."""
    chain = [root] + [root.joinpath(*folder.relative_to(root).parts[: i + 1])
                      for i in range(len(folder.relative_to(root).parts))]
    for parent in chain[:-1]:
        link_if_absent(parent / "zarr.json", _group_json({}))
    link_if_absent(folder / "zarr.json", _group_json(attributes or {}))
    return json.loads((folder / "zarr.json").read_text()).get("attributes", {})


def _group_json(attributes: dict) -> str:
    return json.dumps({"zarr_format": 3, "node_type": "group", "attributes": jsonable(attributes)}, indent=2)


class BlockGroup:
    """One group of a block store: `path` the group's folder, `store` the store's name for messages."""

    def __init__(self, path: str | Path, schema: Schema | None = None, store: str = "the store",
                 root: str | Path | None = None, marker: str = DONE):
        """`schema` is needed to create the group; a writer or reader of an existing one names only the
        `marker` array (its schema's `done`)."""
        self.path, self.schema, self.store = Path(path), schema, store
        self.marker = schema.done if schema is not None else marker
        self.root = Path(root) if root is not None else self.path
        self._group: zarr.Group | None = None

    def __repr__(self) -> str:
        return f"BlockGroup({str(self.path)!r})"

    @property
    def where(self) -> str:
        try:
            return str(self.path.relative_to(self.root))
        except ValueError:
            return str(self.path)

    def exists(self) -> bool:
        """The group and its settings are recorded (its arrays may still be missing: see `complete`)."""
        return (self.path / "zarr.json").is_file()

    def complete(self) -> bool:
        """Every array is created: the marker array comes last, so a creation killed midway is not
        complete, and `create` (idempotent) finishes it."""
        return (self.path / self.marker / "zarr.json").is_file()

    # ------------------------------------------------------------------ creating
    def create(self, settings: dict) -> None:
        """Record the settings (or refuse other ones) and create the schema's arrays; idempotent."""
        sweep_partial(self.path)
        stored = ensure_group(self.root, self.path, settings)
        diff = settings_diff(stored, settings)
        if diff:
            raise UserError(
                f"{self.where} in {self.root} ({self.store}) was created with other settings ({diff}). "
                f"Use a different store, or delete the group folder {self.path} to recompute it.")
        group = zarr.open_group(self.path, mode="r+", zarr_format=3)
        block_shape, block_dims = self.schema.block_shape(), self.schema.block_dims()
        done = Array(block_dims, block_shape, "bool", False, description="set after the block's data: finished")
        for name, spec in self.schema.arrays.items():
            self._require_array(group, name, spec)
        for name, values in self.schema.coords.items():
            dims, values = values if isinstance(values, tuple) else ((name,), values)
            self._require_coord(group, name, dims, np.asarray(values))
        self._require_array(group, self.schema.done, done)  # last: what `complete` checks
        self._group = None

    def _require_array(self, group: zarr.Group, name: str, spec: Array) -> None:
        chunks = (1,) * self.schema.blocks + tuple(spec.shape[self.schema.blocks:])
        node = group.get(name)
        if node is None:
            try:
                group.create_array(name, shape=spec.shape, chunks=chunks, dtype=spec.dtype, fill_value=spec.fill,
                                   dimension_names=spec.dims, compressors=spec.compressors,
                                   attributes={"description": spec.description} if spec.description else {})
                return
            except ContainsArrayError:  # another worker created it first
                node = group.get(name)
        got = (tuple(node.shape), tuple(node.chunks), tuple(node.metadata.dimension_names or ()), str(node.dtype))
        want = (tuple(spec.shape), chunks, tuple(spec.dims), str(np.dtype(spec.dtype)))
        if got != want:
            raise UserError(
                f"{self.where}/{name} in {self.root} ({self.store}) has (shape, chunks, dims, dtype) {got}, "
                f"expected {want}. Use a different store, or delete the group folder {self.path} to recompute it.")

    @staticmethod
    def _require_coord(group: zarr.Group, name: str, dims: tuple, values: np.ndarray) -> None:
        node = group.get(name)
        if node is None:
            try:
                group.create_array(name, data=values, chunks=values.shape, dimension_names=dims)
                return
            except ContainsArrayError:
                node = group.get(name)
        if node.shape != values.shape or not np.array_equal(node[:], values):
            node[:] = values  # the settings matched, so this is a creation that crashed midway: finish it

    # ------------------------------------------------------------------ using
    def group(self) -> zarr.Group:
        if self._group is None:
            if not self.exists():
                raise UserError(f"No {self.where} in {self.root} ({self.store}) yet.")
            self._group = zarr.open_group(self.path, mode="r+", zarr_format=3)
        return self._group

    def settings(self) -> dict:
        return dict(self.group().attrs)

    def write(self, block: tuple, values: dict[str, np.ndarray]) -> None:
        """Write one block's arrays, then mark it done (un-marked first if it was: a rewrite is safe)."""
        group = self.group()
        self._sweep_block(block, [*values, self.marker])
        done = group[self.marker]
        if done[block]:
            done[block] = False
        for name, value in values.items():
            group[name][block] = value
        done[block] = True

    def _sweep_block(self, block: tuple, names: list[str]) -> None:
        """Delete the ``*.partial`` files a killed write of this block left (its own chunks only).

        A block's chunks have one writer, the job that owns the block, so whatever partial file sits
        among them is an earlier attempt's: removed at once, unlike `sweep_partial`'s grace."""
        where = "/".join(str(int(i)) for i in block)
        for name in names:
            chunk = self.path / name / "c" / where
            stale = list(chunk.parent.glob(f"{chunk.name}.*.partial"))  # the done chunk: c/i/j.<id>.partial
            if chunk.is_dir():
                stale += chunk.rglob("*.partial")
            for path in stale:
                path.unlink(missing_ok=True)

    def done(self) -> np.ndarray:
        """The done marks (block dims), all False where the group is not complete yet."""
        if not self.complete():
            return np.zeros(self.schema.block_shape(), bool) if self.schema else np.zeros(0, bool)
        return np.asarray(self.group()[self.marker][:])

    def is_done(self, block: tuple) -> bool:
        return self.complete() and bool(self.group()[self.marker][block])

    def read(self, name: str, block: tuple) -> np.ndarray:
        return np.asarray(self.group()[name][block])


class EpochBlocks:
    """A block group per (run, layer) under `path`, one block per epoch (a job's one checkpoint): what
    the trust and tuning stores share; each subclass creates its own schema and names itself."""

    what = "the store"  # how an error names it

    def __init__(self, path: str | Path):
        self.path = Path(path)

    def _group(self, run: str, layer: str, schema=None) -> BlockGroup:
        return BlockGroup(self.path / run / layer, schema, self.what, self.path)

    def epochs(self, run: str, layer: str) -> list[int]:
        return [int(e) for e in self._group(run, layer).group()["epoch"][:]]

    def is_done(self, run: str, layer: str, epoch: int) -> bool:
        group = self._group(run, layer)
        if not group.exists():
            return False
        epochs = self.epochs(run, layer)
        return epoch in epochs and group.is_done((epochs.index(epoch),))

    def write(self, run: str, layer: str, epoch: int, values: dict[str, np.ndarray]) -> None:
        """One epoch's arrays (float32); the block is marked done after its data."""
        group = self._group(run, layer)
        group.write((self.epochs(run, layer).index(epoch),), {k: v.astype(np.float32) for k, v in values.items()})

    def settings(self, run: str, layer: str) -> dict | None:
        group = self._group(run, layer)
        return group.settings().get("settings") if group.exists() else None
