"""The probe stage: one job per (run, epoch), linear probes on that checkpoint's frozen features.

A job writes its metrics file (``metrics/probe/<run>/epoch_NNN.parquet``), whose presence marks it
done; the stage's settings are recorded with the first result.
"""

from __future__ import annotations

from ..data.datasets import labelled
from ..errors import UserError
from ..nets.checkpoints import load_into
from ..nets.layers import check_layers
from ..nets.models import feature_layer
from ..runtime import use_bf16
from ..store import MetricsTable
from ..train.probe import chance_level, fit_probes, pooled_features
from .base import StudyStage, architecture, build, checkpoints


def _key(run: str, epoch: int) -> str:
    return f"{run}/epoch_{epoch:03d}"


class ProbeStage(StudyStage):
    name = "probe"

    def settings(self, study) -> dict:
        return study.probe.model_dump(mode="json")

    def plan(self, study, runs):
        selected = self.runs(study, runs)
        for run in selected:  # names before settings: a typo is reported as itself
            self._model(run, study.probe)
        self.check_settings(study)
        return [self.job((run.name, epoch), run.name) for run in selected for epoch in checkpoints(study, run)]

    def is_done(self, study, job) -> bool:
        return MetricsTable(study.store).has("probe", _key(*job.key))

    def _model(self, run, spec):
        """A model of the run's architecture and its checked layer name, built once per process."""
        def make():
            model = build(run)
            return model, check_layers(model, spec.layer or feature_layer(run.arch, model))[0]

        return self.cached("model", (architecture(run), spec.layer), make)

    def _data(self, spec, data_spec):
        """The labelled train and test sets: a pure function of the data spec, kept per process."""
        return self.cached("data", (data_spec.model_dump_json(), spec.train_size, spec.test_size),
                           lambda: (labelled(data_spec, "train", spec.train_size),
                                    labelled(data_spec, "test", spec.test_size)))

    def run(self, study, job, device, emit) -> dict:
        name, epoch = job.key
        spec, run = study.probe, study.run(name)
        train_set, test_set = self._data(spec, spec.data or run.data)
        _check_classes(train_set, spec, run)
        model, layer = self._model(run, spec)
        load_into(model, checkpoints(study, run)[epoch])
        bf16 = use_bf16(device, study.precision)
        x_train = pooled_features(model, layer, train_set.images, device, bf16)
        x_test = pooled_features(model, layer, test_set.images, device, bf16)
        scores = fit_probes(x_train, train_set.labels, x_test, test_set.labels, spec.classifiers,
                            adam_epochs=spec.adam_epochs, seed=run.seed)
        base = self.row(run, epoch=epoch, layer=layer)
        rows = [dict(base, metric=f"probe_{name}_{split}", value=acc)
                for name, accs in scores.items() for split, acc in accs.items()]
        rows.append(dict(base, metric="probe_chance", value=chance_level(train_set.labels, test_set.labels)))
        self.record_settings(study)
        MetricsTable(study.store).write("probe", _key(name, epoch), rows)
        best = scores[spec.classifiers[0]]["test"]
        emit(f"{spec.classifiers[0]} {best:.3f}")
        return {"accuracy": float(best)}


def _check_classes(train_set, spec, run) -> None:
    if len(train_set.labels.unique()) < 2:
        data_spec = spec.data or run.data
        where = f"{data_spec.name} at {data_spec.root}" if data_spec.root else data_spec.name
        field = "probe.data" if spec.data else f"the data of run {run.name!r}"
        raise UserError(f"The probe's training images ({where}) hold a single class "
                        f"({train_set.categories[int(train_set.labels[0])]!r}); a linear probe needs two or more. "
                        f"Check {field}.")


STAGE = ProbeStage()
