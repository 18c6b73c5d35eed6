"""The width study's stage: one job per (family, width, seed), and one raw-input baseline per seed.

A job builds its task from the study's `width:` section (data/width_tasks.py; the same images for
every job of a seed), trains its net on the original task, reads the new task from its frozen
features, and writes its rows to ``metrics/width/<family>/w<width>_s<seed>.parquet``, whose
presence marks it done.
"""

from __future__ import annotations

from ..store import MetricsTable
from ..train.width_study import new_task_accuracy, width_rows
from .base import StudyStage


def width_spec(study):
    from ..specs import WidthSpec

    return study.width or WidthSpec()


def _key(job) -> str:
    family, width, seed = job.key
    return f"{family}/w{width}_s{seed}"


class WidthStage(StudyStage):
    name = "width"

    def settings(self, study) -> dict:
        return width_spec(study).model_dump(mode="json")

    def plan(self, study, runs):
        spec = width_spec(study)
        self.check_settings(study)
        jobs = [self.job(("raw", 0, seed), "baseline") for seed in spec.seeds]
        return jobs + [self.job((family, width, seed), family)
                       for family in spec.families for width in spec.widths for seed in spec.seeds]

    def prepare(self, study, jobs) -> None:
        from ..data.width_tasks import width_task

        width_task(width_spec(study), width_spec(study).seeds[0])  # a bad folder or coarse map fails before any job

    def is_done(self, study, job) -> bool:
        return MetricsTable(study.store).has("width", _key(job))

    def run(self, study, job, device, emit) -> dict:
        from ..data.width_tasks import width_task
        from ..nets.width import conv_family, fc_family

        family, width, seed = job.key
        spec = width_spec(study)
        data = width_task(spec, seed)
        if family == "raw":
            value = new_task_accuracy(data.x_train.flatten(1), data.new_train, data.x_test.flatten(1), data.new_test,
                                      seed)
            rows = [{"run": f"raw-s{seed}", "condition": "raw", "seed": seed, "layer": "raw", "space": "input",
                     "metric": "width_new_accuracy", "value": value}]
        else:
            nets = (fc_family(data.inputs, data.classes, [width], spec.budget, spec.max_depth) if family == "fc"
                    else conv_family(data.channels, data.classes, [width]))
            rows = width_rows(family, nets, data, spec.epochs, seed)
        self.record_settings(study)
        MetricsTable(study.store).write("width", _key(job), rows)
        value = next(r["value"] for r in rows if r["metric"] == "width_new_accuracy")
        emit(f"new task {value:.3f}")
        return {"new_accuracy": float(value)}


STAGE = WidthStage()
