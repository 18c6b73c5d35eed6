"""Prototypes embedded in a model space, on disk: computed once, so an interrupted `analyze` resumes."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..errors import UserError
from .blocks import Array, BlockGroup, Schema, settings_diff


class EmbeddingStore:
    """``embeddings.zarr/<masked|unmasked>/<space>/<run>/<layer>/``: ``embedding[epoch, repeat, unit, feature]``
    (float32, one chunk per (epoch, repeat)) and ``done[epoch, repeat]``: a block group (`store.blocks`).

    Masked and unmasked embeddings live apart, so switching `analyze.masked` never reuses the
    other's; a space's settings are recorded, and a space redefined under the same name is refused.
    The group is created by the first write of a (space, run, layer): its feature count is known
    only once the space has embedded something.
    """

    def __init__(self, path: str | Path, masked: bool = True):
        self.path = Path(path)
        self.kind = "masked" if masked else "unmasked"

    def _group(self, space, run: str, layer: str, schema: Schema | None = None) -> BlockGroup:
        return BlockGroup(self.path / self.kind / space.name / run / layer, schema,
                          "the embedding store", self.path)

    def check(self, space, run: str, layer: str, epochs: list[int]) -> None:
        """Refuse a space redefined under a stored name (before any work)."""
        group = self._group(space, run, layer)
        if group.exists():
            diff = settings_diff(group.settings(), self._settings(space, epochs))
            if diff:
                raise UserError(f"Embeddings of space {space.name!r} in {group.path} were computed with other "
                                f"settings ({diff}). Name the new space differently, or delete "
                                f"{self.path / self.kind / space.name} to recompute it.")

    @staticmethod
    def _settings(space, epochs: list[int]) -> dict:
        return {"space": space.settings(), "epochs": [int(e) for e in epochs]}

    def done(self, space, run: str, layer: str, shape: tuple[int, int]) -> np.ndarray:
        """done[epoch index, repeat] (all False before the first write)."""
        group = self._group(space, run, layer)
        return group.done() if group.complete() else np.zeros(shape, bool)

    def write(self, space, run: str, layer: str, epochs: list[int], repeats: int, index: int, which: list[int],
              values: np.ndarray) -> None:
        """Blocks of one epoch index, repeats `which`: values (len(which), units, features), each then marked done."""
        values = np.asarray(values, dtype=np.float32)
        E, U, F = len(epochs), values.shape[1], values.shape[2]
        schema = Schema({"embedding": Array(("epoch", "repeat", "unit", "feature"), (E, repeats, U, F), "float32",
                                            float("nan"))}, blocks=2,
                        coords={"epoch": np.asarray(epochs, "int64"), "repeat": np.arange(repeats, dtype="int64"),
                                "unit": np.arange(U, dtype="int64")})
        group = self._group(space, run, layer, schema)
        if not group.complete():  # never created, or a creation killed midway
            group.create(self._settings(space, epochs))
        for k, r in enumerate(which):
            group.write((index, r), {"embedding": values[k]})

    def read(self, space, run: str, layer: str, index: int) -> np.ndarray:
        """(repeat, unit, feature) embeddings of one epoch index (NaN where not done)."""
        return np.asarray(self._group(space, run, layer).group()["embedding"][index])
