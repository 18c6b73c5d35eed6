"""The tuning stage: hue, orientation, spatial frequency and contrast curves of every unit, per checkpoint.

One job per (run, epoch): one truncated forward pass of the whole stimulus set (`analyze/tuning.py`)
reads every unit of every studied layer at its position. The stimuli depend on the image size and
the rsa stimulus set only (its images spread over every category), so each process makes them once. Results: `store.tuning` (indices and
curves per unit) and the metrics table (stage ``tuning``: each index's mean over the units that
respond, per layer and epoch). A job reads one checkpoint and nothing later: `watch` runs it live.
"""

from __future__ import annotations

import numpy as np
import torch

from ..analyze.tuning import at_position
from ..nets.checkpoints import load_into
from ..nets.layers import check_layers
from ..store import MetricsTable, layout
from ..store.tuning import INDICES, TuningStore
from .base import StudyStage, build, checkpoints_at


class TuningStage(StudyStage):
    name = "tuning"

    def settings(self, study) -> dict:
        settings = study.tuning.model_dump(mode="json", exclude={"layers", "epochs", "batch_size"})
        return dict(settings, probe="spread over the rsa stimulus set")

    def _layers(self, study, run) -> list[str]:
        return check_layers(build(run), list(study.tuning.layers or study.layers))

    def plan(self, study, runs):
        jobs = []
        for run in self.runs(study, runs):
            files = checkpoints_at(study, run, study.tuning.epochs, "tuning.epochs")
            layers = tuple(self._layers(study, run))
            jobs += [self.job((run.name, epoch, layers), run.name) for epoch in files]
        self.check_settings(study)
        return jobs

    def prepare(self, study, jobs) -> None:
        """Every (run, layer) group, its unit count from one forward pass of one image."""
        store = TuningStore(layout.tuning(study))
        for name, layers in dict.fromkeys((job.key[0], job.key[2]) for job in jobs):
            run = study.run(name)
            epochs = list(checkpoints_at(study, run, study.tuning.epochs, "tuning.epochs"))
            stimuli = self._stimuli(study, run)
            model, net = self.traced(run, layers, "cpu")
            units = {layer: at_position(a).shape[1] for layer, a in net(stimuli.gratings[0, 0, 0, :1]).items()}
            steps = {"hue": stimuli.hues, "orientation": stimuli.orientations, "frequency": stimuli.frequencies,
                     "contrast": stimuli.contrasts}
            for layer in layers:
                store.create(name, layer, epochs, units[layer], steps, self.settings(study))

    def is_done(self, study, job) -> bool:
        run, epoch, layers = job.key
        store = TuningStore(layout.tuning(study))
        return all(store.is_done(run, layer, epoch) for layer in layers)

    def _stimuli(self, study, run):
        """The stimulus set at the run's image size: made once per process."""
        from ..analyze.activations import stimulus_set
        from ..analyze.tuning import make_stimuli, spread

        size = run.data.image_size

        def make():
            probe = spread(stimulus_set(study).images, study.tuning.images).float() / 255
            return make_stimuli(torch.nn.functional.interpolate(probe, size=size, mode="bilinear", antialias=True)
                                if probe.shape[-1] != size else probe, size, study.tuning)

        return self.cached("stimuli", (study.tuning.model_dump_json(), study.rsa.model_dump_json(), size), make)

    def run(self, study, job, device, emit) -> dict:
        from ..analyze.tuning import indices, measure
        from ..data.datasets import normalize

        name, epoch, layers = job.key
        run, store = study.run(name), TuningStore(layout.tuning(study))
        model, net = self.traced(run, layers, device)
        load_into(model, checkpoints_at(study, run, [epoch], "tuning.epochs")[epoch])
        stimuli = self._stimuli(study, run)

        def read(images):  # every layer from one truncated forward pass (all again when one is missing: the
            out = net(normalize(images.to(device)))  # job's rows are one file)
            return {layer: at_position(out[layer]) for layer in layers}

        curves = measure(read, stimuli, study.tuning.batch_size)
        found = {layer: indices(curves[layer], stimuli, study.tuning.shuffles) for layer in layers}
        self.record_settings(study)  # once, with the job's first result
        rows = []
        for layer, values in found.items():
            store.write(name, layer, epoch, values)
            rows += _rows(self.row(run, epoch=epoch, layer=layer), values)
        emit(f"tuning epoch {epoch}")
        MetricsTable(study.store).write("tuning", f"{name}/{epoch}", rows)
        return {"layers": len(layers)}


CIRCULAR = ("preferred_hue", "preferred_orientation")  # angles: a layer mean of them means nothing


def _rows(base: dict, found: dict[str, np.ndarray]) -> list[dict]:
    """Each index's mean over the units that respond (NaN ones are silent), and how many respond;
    the preferred angles stay per unit (`store.tuning`)."""
    rows = [dict(base, metric=f"tuning_{name}", value=float(np.nanmean(found[name])))
            for name in INDICES if name not in CIRCULAR and np.isfinite(found[name]).any()]
    return rows + [dict(base, metric="tuning_units", value=float(np.isfinite(found["colour_selectivity"]).sum()))]


STAGE = TuningStage()
