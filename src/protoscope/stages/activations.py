"""The activations stage (run by `rsa`): the stimulus set's activations at each checkpoint, stored once.

One job per (run, epoch): every studied layer comes from one forward pass truncated at the deepest.
RSA, alignment and atlases read them back (`store.activations`).
"""

from __future__ import annotations

from ..errors import UserError
from ..nets.checkpoints import load_into
from ..nets.layers import check_layers
from ..store.activations import ActivationStore, activation_store
from ..store.blocks import settings_diff
from .base import StudyStage, build, checkpoints_at


def activation_settings(study) -> dict:
    """What determines stored activations besides the run and layer (compared on resume)."""
    spec = study.rsa
    data = (spec.data or study.runs[0].data).model_dump(mode="json")
    return {"probe": {"data": data, "images": spec.images}, "features": spec.features}


class ActivationStage(StudyStage):
    """Jobs (run, epoch, layers): the stimulus set's activations at one checkpoint, every layer at once."""

    name = "activations"

    def __init__(self, layers: tuple[str, ...] | None = None):
        self.layers = layers

    def plan(self, study, runs):
        spec, store, settings = study.rsa, activation_store(study), activation_settings(study)
        jobs = []
        for run in self.runs(study, runs):
            files = checkpoints_at(study, run, spec.epochs, "rsa.epochs")
            names = check_layers(build(run), list(self.layers or spec.layers or study.layers))
            for layer in names:  # refuse other settings before any work
                _check_stored(store, run.name, layer, settings, list(files))
            jobs += [self.job((run.name, epoch, tuple(names)), run.name) for epoch in files]
        return jobs

    def prepare(self, study, jobs) -> None:
        """Every (run, layer) group created before any job runs (unit counts from one stimulus image).

        The stimulus set and the first checkpoint are read before the store is touched: a one-category
        or unreadable stimulus set, a corrupt file or NaN weights stop the stage with the store as it was.
        """
        from ..analyze.activations import layer_activations, stimulus_set
        from ..analyze.rsa import check_categories

        store, settings, stimuli = activation_store(study), activation_settings(study), None
        for run_name, names in dict.fromkeys((j.key[0], j.key[2]) for j in jobs):
            missing = [layer for layer in names if not store.has_layer(run_name, layer)]
            if not missing:
                continue
            if stimuli is None:
                stimuli = stimulus_set(study)
                check_categories(stimuli.labels.numpy(), stimuli.categories)  # the analyses compare categories
            run = study.run(run_name)
            files = checkpoints_at(study, run, study.rsa.epochs, "rsa.epochs")
            model = load_into(build(run), next(iter(files.values())))
            units = {k: v.shape[1] for k, v in layer_activations(model, missing, stimuli.images[:1], device="cpu",
                                                                 features=study.rsa.features).items()}
            for layer in missing:
                store.ensure_layer(run_name, layer, epochs=list(files), labels=stimuli.labels.numpy(),
                                   categories=stimuli.categories, n_units=units[layer], settings=settings)

    def is_done(self, study, job) -> bool:
        run, epoch, names = job.key
        store = activation_store(study)
        return all(epoch in store.done_epochs(run, layer) for layer in names)

    def run(self, study, job, device, emit) -> dict:
        from ..analyze.activations import layer_activations, stimulus_set

        run_name, epoch, names = job.key
        run, store = study.run(run_name), activation_store(study)
        todo = [layer for layer in names if epoch not in store.done_epochs(run_name, layer)]
        stimuli = stimulus_set(study)
        model, net = self.traced(run, names, device)
        load_into(model, checkpoints_at(study, run, [epoch], "rsa.epochs")[epoch])
        acts = layer_activations(net, list(names), stimuli.images, device=device, batch_size=study.rsa.batch_size,
                                 features=study.rsa.features)
        for layer in todo:
            store.write_epoch(run_name, layer, epoch, acts[layer].cpu().numpy())
        emit(f"activations epoch {epoch}")
        return {"layers": len(todo)}


def _check_stored(store: ActivationStore, run: str, layer: str, settings: dict, epochs: list[int]) -> None:
    if not store.has_layer(run, layer):
        return
    stored = store.settings(run, layer)
    clash = settings_diff({k: stored.get(k) for k in settings}, settings)
    if clash or stored["epochs"] != epochs:
        clash = clash or f"epochs: stored {stored['epochs']}, now {epochs}"
        raise UserError(f"Activations of {run}/{layer} in {store.path} were computed with other "
                        f"settings ({clash}). Delete {store.path / 'runs' / run / layer} to "
                        "recompute them, or use another store.")


STAGE = ActivationStage()


def compute_activations(study, runs: list[str] | None = None, layers: list[str] | None = None, *,
                        progress=None, executor=None) -> int:
    """Store the stimulus set's activations for every run × layer × epoch not yet stored; returns epochs computed.

    Layers default to `rsa.layers` (or the study's layers), epochs to `rsa.epochs` (or every
    checkpoint).
    """
    from .execution import execute

    return execute(ActivationStage(tuple(layers) if layers else None), study, executor, runs, progress).done_now
