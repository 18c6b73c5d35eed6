"""The rsa stage: one job per (run, layer), the RDMs of every studied epoch and their trajectory metrics.

It reads the stored activations (the activations stage runs first). A job is done when both its
metrics file and its RDM file are stored; the settings are recorded with the first result.
"""

from __future__ import annotations

from ..analyze.dimensionality import dimensionality_rows
from ..analyze.rsa import check_categories, epoch_rdms, metric_settings, trajectory_metrics
from ..nets.layers import check_layers
from ..store import MetricsTable
from ..store.activations import read_activations
from ..store.rdms import rdm_path, save_rdms
from .base import StudyStage, build, checkpoints_at


class RSAStage(StudyStage):
    name = "rsa"

    def __init__(self, layers: tuple[str, ...] | None = None):
        self.layers = layers

    def settings(self, study) -> dict:
        return metric_settings(study.rsa)

    def plan(self, study, runs):
        jobs = []
        for run in self.runs(study, runs):  # names and epochs before settings
            layers = check_layers(build(run), list(self.layers or study.rsa.layers or study.layers))
            checkpoints_at(study, run, study.rsa.epochs, "rsa.epochs")
            jobs += [self.job((run.name, layer), run.name) for layer in layers]
        self.check_settings(study)
        return jobs

    def is_done(self, study, job) -> bool:
        return MetricsTable(study.store).has("rsa", "/".join(job.key)) and rdm_path(study.store, *job.key).is_file()

    def run(self, study, job, device, emit) -> dict:
        name, layer = job.key
        spec, run = study.rsa, study.run(name)
        acts = read_activations(study, name, layer, list(checkpoints_at(study, run, spec.epochs, "rsa.epochs")))
        check_categories(acts.labels, acts.categories)
        rdms = epoch_rdms(acts, spec.distance, spec.folds)
        base = self.row(run, layer=layer)
        rows = [dict(base, **row) for row in trajectory_metrics(rdms, acts.categories, spec.compare)]
        rows += dimensionality_rows(acts, base)  # the same activations: how many directions they use
        self.record_settings(study)
        save_rdms(rdms, rdm_path(study.store, name, layer))
        MetricsTable(study.store).write("rsa", f"{name}/{layer}", rows)
        emit(f"RDMs {layer}")
        return {}


STAGE = RSAStage()


def rsa_run(study, run, layers: list[str], progress=None, executor=None) -> int:
    """RDMs and trajectory metrics of one run, per layer not yet stored; returns the jobs done now.

    Activations must be stored (`stages.activations.compute_activations`).
    """
    from .execution import execute

    return execute(RSAStage(tuple(layers)), study, executor, [run.name], progress).done_now
