"""The atlas stage: one job per (runs, layer), every epoch inside, so all epochs share one UMAP layout.

A job's runs are one run, or a group from `atlas.together` (e.g. both colour conditions): the layout
then covers every epoch of every run of the group (`atlas.layout`: aligned UMAPs chained through the
same images, or one joint UMAP), and a cell means the same region of the map for all of them.

Its arrays are described in `store.atlas`. Epoch 0 is the random initialisation: the seed's
control, on the same map. The layout is fitted again on resume (seeded: the same map), so a job
killed after some epochs finishes the rest.
"""

from __future__ import annotations

import numpy as np

from ..analyze.atlas import aligned_layout, shared_layout
from ..analyze.atlas_draw import draw_cells, layer_samples
from ..errors import UserError
from ..nets.checkpoints import load_into
from ..nets.layers import check_layers
from ..store import MetricsTable
from ..store.atlas import atlas_group, atlas_schema
from .base import StudyStage, build, checkpoints_at


def atlas_spec(study):
    from ..specs import AtlasSpec

    return study.atlas or AtlasSpec()


class AtlasStage(StudyStage):
    name = "atlas"

    def plan(self, study, runs):
        spec = atlas_spec(study)
        names = runs or spec.runs or [run.name for run in study.runs]
        jobs = []
        for group in map_groups(study, names):
            for name in group:
                _files(study, study.run(name))
            run = study.run(group[0])
            layers = check_layers(build(run),
                                  list(spec.layers or study.layers[-1:]))
            jobs += [self.job((group, layer), "+".join(group)) for layer in layers]
        return jobs

    def prepare(self, study, jobs) -> None:
        from ..synth.layer import layer_units

        spec = atlas_spec(study)
        groups = {name: group for group, _ in (job.key for job in jobs) for name in group}
        for name, group in groups.items():  # per run: one model, one image set, all its layers
            run = study.run(name)
            layers = [layer for runs, layer in (job.key for job in jobs) if name in runs]
            units = layer_units(build(run), layers, _data(spec, run).image_size)
            data, size, epochs = _images(spec, run), _icon_size(spec, run), list(_files(study, run))
            settings = {"settings": spec.model_dump(mode="json", exclude={"runs", "layers", "together"}),
                        "icon_size": size, "categories": list(data.categories), "map_runs": list(group)}
            for layer in layers:
                schema = atlas_schema(spec, epochs, units[layer], size, data.labels.numpy())
                atlas_group(study, name, layer, schema).create(settings)

    def is_done(self, study, job) -> bool:
        runs, layer = job.key
        groups = [atlas_group(study, name, layer) for name in runs]
        return all(group.complete() and bool(group.done().all()) for group in groups)

    def run(self, study, job, device, emit) -> dict:
        runs, layer = job.key
        spec = atlas_spec(study)
        acts = map_activations(study, runs, layer, device, emit)
        keys = chain_order(runs, list(acts))
        if spec.layout == "aligned" and len({len(acts[k]) for k in keys}) > 1:
            raise UserError(f"atlas.layout aligned links the runs {list(runs)} through the same images, but their "
                            "image sets differ in size; give them the same data or use layout: joint")
        fit = aligned_layout if spec.layout == "aligned" else shared_layout
        layouts = dict(zip(keys, fit([acts[k] for k in keys], n_neighbors=spec.n_neighbors, min_dist=spec.min_dist,
                                     seed=spec.seed)))
        table, drawn = MetricsTable(study.store), 0
        for name in runs:
            run, group = study.run(name), atlas_group(study, name, layer)
            files, done = _files(study, run), group.done()
            model = build(run)
            for index, epoch in enumerate(files):
                drawn += 1
                if done[index]:
                    continue
                load_into(model, files[epoch])
                block = _draw_epoch(model.to(device).eval(), layer, acts[name, epoch], layouts[name, epoch], study,
                                    run, device, seed=spec.seed + epoch)
                group.write((index,), block)
                table.write("atlas", f"{name}/{layer}/epoch_{epoch:03d}", _summary_rows(run, layer, epoch, block))
                emit(f"icons {name} epoch {epoch}", fraction=0.3 + 0.7 * drawn / len(keys))
        return {"maps": len(keys)}


def chain_order(runs, keys: list) -> list:
    """(run, epoch) keys in the order an aligned layout links them: the first run's epochs backwards,
    the next forwards, and so on, so neighbours in the chain are neighbouring epochs of a run or two
    runs at the same end of training (their random inits, or their last epochs).
    Public so that bench/atlas_layout.py lays out the stage's own chain."""
    order = []
    for k, name in enumerate(runs):
        mine = [key for key in keys if key[0] == name]
        order += mine[::-1] if k % 2 == 0 and len(runs) > 1 else mine
    return order


def map_groups(study, names: list[str]) -> list[tuple[str, ...]]:
    """The runs of each map: a group of `atlas.together` when a run is in one, else the run alone.

    A group is kept whole when any of its runs is asked for (its map needs all of them)."""
    together = [tuple(group) for group in atlas_spec(study).together]
    known = {run.name for run in study.runs}
    for group in together:
        unknown = [name for name in group if name not in known]
        if unknown:
            raise UserError(f"atlas.together names unknown runs {unknown}; runs: {', '.join(sorted(known))}")
    seen: dict[str, tuple[str, ...]] = {}
    for name in names:
        owner = next((g for g in together if name in g), (name,))
        if len([g for g in together if name in g]) > 1:
            raise UserError(f"atlas.together: run {name!r} is in two groups")
        seen.setdefault(owner[0], owner)
    return list(dict.fromkeys(seen.values()))


def map_activations(study, runs, layer: str, device, emit) -> dict:
    """{(run, epoch): (N, C)} at the same sampled positions, for every epoch of every run of the map.
    Public so that bench/atlas_layout.py lays out the very samples the stage lays out."""
    spec, acts = atlas_spec(study), {}
    total = sum(len(_files(study, study.run(name))) for name in runs)
    for name in runs:
        run = study.run(name)
        model, images = build(run), _images(spec, run).images
        for epoch, path in _files(study, run).items():
            load_into(model, path)
            acts[name, epoch] = layer_samples(model.to(device).eval(), layer, images, spec.seed, device)
            emit(f"activations {name} epoch {epoch}", fraction=0.3 * len(acts) / total)
    return acts


def _data(spec, run):
    return spec.data or run.data


def _icon_size(spec, run) -> int:
    return spec.icon_size or _data(spec, run).image_size


def _files(study, run) -> dict:
    return checkpoints_at(study, run, atlas_spec(study).epochs, "atlas.epochs")


def _images(spec, run):
    from ..data.datasets import labelled

    data = labelled(_data(spec, run), "probe", spec.images)
    if len(data.images) < spec.grid:
        raise UserError(f"The atlas data set has {len(data.images)} images; atlas.images asks for {spec.images}.")
    return data


def _draw_epoch(model, layer: str, acts: np.ndarray, layout: np.ndarray, study, run, device, seed: int) -> dict:
    """One epoch's block (`draw_cells`, as `protoscope.atlas` draws it): the study's generator
    (`synth:`), the atlas's own budget."""
    from .prototypes import build_generator

    spec = atlas_spec(study)
    return draw_cells(model, layer, acts, layout, spec, build_generator(study.synth, _icon_size(spec, run), device, study),
                      device, seed)


def _summary_rows(run, layer: str, epoch: int, block: dict) -> list[dict]:
    base = {"run": run.name, "condition": run.condition, "seed": run.seed, "epoch": epoch, "layer": layer}
    counts, scores = block["count"], block["score"]
    filled = np.isfinite(scores)
    return [dict(base, metric="atlas_filled_cells", value=float(filled.sum())),
            dict(base, metric="atlas_icon_score", value=float(scores[filled].mean()) if filled.any() else float("nan")),
            dict(base, metric="atlas_max_cell_fraction", value=float(counts.max() / max(counts.sum(), 1)))]


STAGE = AtlasStage()
