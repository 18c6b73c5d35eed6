"""The evolve stage: prototypes of every unit, one job per (run, layer, epoch), its repeats inside.

A job is idempotent and marked done only after its arrays are written, so an interrupted `evolve`
resumes with the first unfinished job. Repeat r uses seed `synth.seed + r` at every epoch and layer:
the same random pool at every checkpoint, so epoch-to-epoch differences come from the network, not
the draw.
"""

from __future__ import annotations

import torch

from ..errors import UserError
from ..nets.checkpoints import load_into
from ..nets.layers import check_layers
from ..runtime import use_bf16
from ..store import MetricsTable, layout
from ..store.arrays import ArrayStore
from ..synth.generators import Generator, sized_generator
from ..synth.layer import layer_prototypes, layer_units, natural_starts, prepare
from ..synth.position import unit_position
from ..synth.receptive import measure_receptive_field
from .base import StudyStage, build, checkpoints


def build_generator(spec, image_size: int, device: torch.device, study=None) -> Generator:
    """The study's generator (`synth:`) at an image size, on a device. The maco prior's amplitude
    spectrum is the study's stimulus images' unless its options give one."""
    options = dict(spec.generator_options)
    if spec.generator == "maco" and study is not None and not {"images", "magnitude"} & set(options):
        options["images"] = _stimuli(study)
    return sized_generator(spec.generator, image_size, options).to(device)


def _stimuli(study) -> torch.Tensor:
    """The study's stimulus images (`rsa.images` of its data): the natural images synthesis starts from."""
    from ..analyze.activations import stimulus_set

    return stimulus_set(study).images


def evolve_epochs(study, run) -> dict:
    """{epoch: checkpoint} the stage evolves: `synth.epochs`, or every stored checkpoint."""
    files = checkpoints(study, run)
    epochs = study.synth.epochs if study.synth.epochs is not None else list(files)
    missing = [e for e in epochs if e not in files]
    if missing:
        raise UserError(f"Run {run.name!r} has no checkpoint for epochs {missing} (synth.epochs / --epochs); "
                        f"stored: {list(files)}")
    return {e: files[e] for e in epochs}


class _Traced:
    """A run's model, generator and traced forwards: what its jobs share in one process.

    Each job loads its own epoch's weights into the shared model; the traced graphs share the
    model's parameters, so they follow. Frozen: the search needs gradients for the latents only, and
    weight gradients would cost as much again as the rest of the backward pass.
    """

    def __init__(self, study, run, device):
        spec, epochs = study.synth, evolve_epochs(study, run)
        self.size = spec.image_size or run.data.image_size
        self.model = build(run)
        self.layers = check_layers(self.model, study.layers)
        self.generator = build_generator(spec, self.size, device, study)
        self.starts = natural_starts(self.generator, _stimuli(study), spec.natural_starts)
        if epochs:
            load_into(self.model, next(iter(epochs.values())))
        self.units = layer_units(self.model.to(device), self.layers, self.size)
        self.model.to(device, memory_format=torch.channels_last).eval().requires_grad_(False)
        self.prepared = {layer: prepare(self.model, layer, self.size, spec.objective, spec.crop)
                         for layer in self.layers}


class EvolveStage(StudyStage):
    """Prototypes of every unit: one job per (run, layer, epoch), its repeats inside (weights loaded once)."""

    name = "evolve"

    def plan(self, study, runs):
        jobs = []
        for run in self.runs(study, runs):
            epochs = evolve_epochs(study, run)
            layers = check_layers(build(run), study.layers)
            jobs += [self.job((run.name, layer, epoch), run.name) for epoch in epochs for layer in layers]
        return jobs

    def _todo(self, study, job) -> tuple[list[int], bool]:
        """(repeats not done, whether the receptive field is missing) of a job."""
        run, layer, epoch = job.key
        store = ArrayStore(layout.arrays(study))
        if not (store.path / "zarr.json").is_file() or not store.has_layer(run, layer):
            return list(range(study.synth.repeats)), study.synth.rf != "none"
        done = {r for e, r in store.done_jobs(run, layer) if e == epoch}
        return ([r for r in range(study.synth.repeats) if r not in done],
                study.synth.rf != "none" and not store.has_rf(run, layer, epoch))

    def is_done(self, study, job) -> bool:
        repeats, rf = self._todo(study, job)
        return not repeats and not rf

    def prepare(self, study, jobs) -> None:
        """The layers' arrays, created before any job runs. The first checkpoint is read before the
        store is touched: another architecture, a pickled or corrupt file, or NaN weights stop the
        stage with the store as it was."""
        from ..runtime import resolve_device

        spec = study.synth
        store = ArrayStore(layout.arrays(study))
        settings = {f"synth_{k}": v for k, v in spec.model_dump(mode="json", exclude={"epochs"}).items()}
        device = resolve_device(study.device)
        for name in dict.fromkeys(job.key[0] for job in jobs):
            run = study.run(name)
            epochs = evolve_epochs(study, run)
            size = spec.image_size or run.data.image_size
            model = build(run)
            layers = check_layers(model, study.layers)
            generator = build_generator(spec, size, device, study)
            latent_dim = generator.latent_dim
            natural_starts(generator, _stimuli(study)[:1], spec.natural_starts)  # no encoder: refused now
            if epochs:
                load_into(model, next(iter(epochs.values())))
            units = layer_units(model.to(device), layers, size)
            for layer in layers:
                store.ensure_layer(run.name, layer, epochs=list(epochs), repeats=spec.repeats, units=units[layer],
                                   image_size=size, latent_dim=latent_dim, steps=spec.adam_steps,
                                   per_unit_rf=spec.rf == "unit", attrs=dict(settings, **_position(model, layer,
                                                                                                   size, spec)))

    def _traced(self, study, run, device) -> _Traced:
        epochs = evolve_epochs(study, run)
        first = next(iter(epochs.values()), None)
        stat = first.stat() if first is not None else None  # a rewritten checkpoint is read (and checked) again
        key = (study.model_dump_json(), run.name, str(device), str(first), stat and (stat.st_mtime_ns, stat.st_size))
        return self.cached("traced", key, lambda: _Traced(study, run, device))

    def run(self, study, job, device, emit) -> dict:
        run_name, layer, epoch = job.key
        spec, run = study.synth, study.run(run_name)
        repeats, need_rf = self._todo(study, job)
        traced = self._traced(study, run, device)
        store, table = ArrayStore(layout.arrays(study)), MetricsTable(study.store)
        model = traced.model
        load_into(model, checkpoints(study, run)[epoch])
        model.to(device).eval()
        prepared = traced.prepared[layer]
        if need_rf:
            _write_rf(store, spec, model, run.name, layer, epoch, traced.size, device, prepared.plan)
        units = traced.units[layer]
        bf16 = use_bf16(device, study.precision)
        for repeat in repeats:  # the engine as `protoscope.prototypes` runs it (synth/layer.py)
            result = layer_prototypes(prepared, traced.generator, units, seed=spec.seed + repeat,
                                      config=spec.engine_config(), device=device, bf16=bf16, starts=traced.starts,
                                      on_phase=lambda phase, left, r=repeat: emit(f"r{r} {phase}", left=left, units=units))
            base = self.row(run, repeat=repeat, epoch=epoch, layer=layer)
            table.write("evolve", f"{run.name}/{layer}/epoch_{epoch:03d}_r{repeat}", [
                dict(base, metric="prototype_score", value=float(result.score.mean())),
                dict(base, metric="silent_fraction", value=float(result.silent.float().mean())),
            ])
            store.write_job(run.name, layer, epoch, repeat, prototype=result.images.numpy(),
                            score=result.score.numpy(), latent=result.latent.numpy(),
                            trace=result.trace.numpy(), silent=result.silent.numpy())
            emit(f"r{repeat} done", score=float(result.score.mean()))
        return {"repeats": len(repeats)}


def _position(model, layer: str, size: int, spec) -> dict:
    """The map cell a centre objective studies, stored with the layer (a store made at another cell
    is refused as made with other settings) and said in words when no cell's field is centred."""
    if spec.objective != "centre":
        return {}
    found = unit_position(model, layer, size)
    return {"position": [found.y, found.x], "position_centred": found.centred,
            "position_note": found.describe(layer)}


def _write_rf(store: ArrayStore, spec, model, run_name: str, layer: str, epoch: int, size: int, device, plan) -> None:
    """The centre unit's receptive field at this checkpoint: per layer, and per unit on request
    (`measure_receptive_field`, as `protoscope.receptive_field` measures it)."""
    rf = measure_receptive_field(model, layer, size, samples=spec.rf_samples, per_unit=spec.rf == "unit",
                                 seed=spec.seed, device=device, plan=plan)
    unit_maps = None if rf.unit_maps is None else rf.unit_maps.numpy()
    unit_masks = None if rf.unit_masks is None else rf.unit_masks.numpy()
    store.write_rf(run_name, layer, epoch, rf.map.numpy(), rf.mask.numpy(), unit_maps, unit_masks)


STAGE = EvolveStage()
