"""The probe stage's jobs: one per (run, epoch), linear probes on that checkpoint's frozen features.

A job writes its metrics file (``metrics/probe/<run>/epoch_NNN.parquet``), whose presence marks it
done; the stage's settings are recorded with the first result.
"""

from __future__ import annotations

from functools import lru_cache

from ..data.datasets import labelled
from ..errors import UserError
from ..jobs import Job
from ..nets.checkpoints import epoch_files, load_into
from ..nets.layers import check_layers
from ..nets.models import build_model, feature_layer
from ..runtime import use_bf16
from ..store import MetricsTable, check_settings
from .probe import chance_level, fit_probes, pooled_features


def _key(run: str, epoch: int) -> str:
    return f"{run}/epoch_{epoch:03d}"


_DATA: dict = {}


def _probe_data(data_spec, train_size: int, test_size: int):
    """The labelled train and test sets (cached per process: a pure function of the data spec)."""
    key = (data_spec.model_dump_json(), train_size, test_size)
    if key not in _DATA:
        _DATA.clear()
        _DATA[key] = labelled(data_spec, "train", train_size), labelled(data_spec, "test", test_size)
    return _DATA[key]


@lru_cache(maxsize=2)
def _model(arch: str, width: float, small_input: bool, layer: str):
    """A model of the architecture and its checked layer name (cached per process: every job loads its
    own weights into it)."""
    model = build_model(arch, width, small_input)
    return model, check_layers(model, layer)[0]


class ProbeStage:
    name = "probe"

    def plan(self, study, runs):
        spec = study.probe
        selected = [study.run(n) for n in runs] if runs else list(study.runs)
        for arch in {(run.arch, run.width, run.small_input) for run in selected}:  # names before settings: a typo
            check_layers(build_model(*arch), spec.layer or feature_layer(arch[0]))  # is reported as itself
        check_settings(study.store, "probe", spec.model_dump(mode="json"), record=False)
        jobs = []
        for run in selected:
            files = epoch_files(study.run_dir(run))
            if not files:
                raise UserError(f"Run {run.name!r} has no checkpoints in {study.run_dir(run)}; "
                                "train it first (protoscope train).")
            jobs += [Job(STAGE_REF, (run.name, epoch), run.name) for epoch in files]
        return jobs

    def is_done(self, study, job) -> bool:
        return MetricsTable(study.store).has("probe", _key(*job.key))

    def prepare(self, study, jobs) -> None:
        pass  # settings are recorded with the first result: a failing first job records nothing

    def run(self, study, job, device, emit) -> dict:
        name, epoch = job.key
        spec, run = study.probe, study.run(name)
        data_spec = spec.data or run.data
        train_set, test_set = _probe_data(data_spec, spec.train_size, spec.test_size)
        if len(train_set.labels.unique()) < 2:
            where = f"{data_spec.name} at {data_spec.root}" if data_spec.root else data_spec.name
            field = "probe.data" if spec.data else f"the data of run {run.name!r}"
            raise UserError(f"The probe's training images ({where}) hold a single class "
                            f"({train_set.categories[int(train_set.labels[0])]!r}); a linear probe needs two or more. "
                            f"Check {field}.")
        model, layer = _model(run.arch, run.width, run.small_input, spec.layer or feature_layer(run.arch))
        load_into(model, epoch_files(study.run_dir(run))[epoch])
        bf16 = use_bf16(device, study.precision)
        x_train = pooled_features(model, layer, train_set.images, device, bf16)
        x_test = pooled_features(model, layer, test_set.images, device, bf16)
        scores = fit_probes(x_train, train_set.labels, x_test, test_set.labels, spec.classifiers,
                            adam_epochs=spec.adam_epochs, seed=run.seed)
        base = {"run": run.name, "condition": run.condition, "seed": run.seed, "epoch": epoch, "layer": layer}
        rows = [dict(base, metric=f"probe_{name}_{split}", value=acc)
                for name, accs in scores.items() for split, acc in accs.items()]
        rows.append(dict(base, metric="probe_chance", value=chance_level(train_set.labels, test_set.labels)))
        check_settings(study.store, "probe", spec.model_dump(mode="json"))  # recorded with the first result
        MetricsTable(study.store).write("probe", _key(name, epoch), rows)
        best = scores[spec.classifiers[0]]["test"]
        emit(f"{spec.classifiers[0]} {best:.3f}")
        return {"accuracy": float(best)}


STAGE = ProbeStage()
STAGE_REF = f"{__name__}:STAGE"
