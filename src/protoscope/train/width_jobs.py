"""The width study's stage: one job per (family, width, seed), and one raw-input baseline per seed.

A job builds its task from the study's `width:` section (the same images for every job of a seed),
trains its net on the original task, reads the new task from its frozen features, and writes its
rows to ``metrics/width/<family>/w<width>_s<seed>.parquet`` — whose presence marks it done.
"""

from __future__ import annotations

import torch

from ..jobs import Job
from ..store import MetricsTable, check_settings
from .width_study import new_task_accuracy, width_rows


def width_spec(study):
    from ..study import WidthSpec

    return study.width or WidthSpec()


def _key(job: Job) -> str:
    family, width, seed = job.key
    return f"{family}/w{width}_s{seed}"


def task(spec, seed: int):
    """(original, new) of the translated-digits task for one seed: train and test images, both labels."""
    from ..data.digits import translated_digits

    train = translated_digits(spec.train_size, spec.canvas, spec.positions, seed=2 * seed)
    test = translated_digits(spec.test_size, spec.canvas, spec.positions, seed=2 * seed + 1)
    as_t = torch.as_tensor
    return (as_t(train.images), as_t(train.shift), as_t(test.images), as_t(test.shift)), (train.digit, test.digit)


class WidthStage:
    name = "width"

    def plan(self, study, runs):
        spec = width_spec(study)
        check_settings(study.store, "width", spec.model_dump(mode="json"), record=False)
        jobs = [Job(WIDTH_REF, ("raw", 0, seed), "baseline") for seed in spec.seeds]
        return jobs + [Job(WIDTH_REF, (family, width, seed), family)
                       for family in spec.families for width in spec.widths for seed in spec.seeds]

    def prepare(self, study, jobs) -> None:
        pass  # settings are recorded with the first result

    def is_done(self, study, job) -> bool:
        return MetricsTable(study.store).has("width", _key(job))

    def run(self, study, job, device, emit) -> dict:
        from ..nets.width import conv_family, fc_family

        family, width, seed = job.key
        spec = width_spec(study)
        original, new = task(spec, seed)
        if family == "raw":
            x_train, _, x_test, _ = original
            value = new_task_accuracy(x_train.flatten(1), new[0], x_test.flatten(1), new[1], seed)
            rows = [{"run": f"raw-s{seed}", "condition": "raw", "seed": seed, "layer": "raw", "space": "input",
                     "metric": "width_new_accuracy", "value": value}]
        else:
            classes, inputs = spec.positions ** 2, spec.canvas ** 2
            nets = (fc_family(inputs, classes, [width], spec.budget) if family == "fc"
                    else conv_family(1, classes, [width]))
            rows = width_rows(family, nets, original, new, spec.epochs, seed)
        check_settings(study.store, "width", spec.model_dump(mode="json"))
        MetricsTable(study.store).write("width", _key(job), rows)
        value = next(r["value"] for r in rows if r["metric"] == "width_new_accuracy")
        emit(f"new task {value:.3f}")
        return {"new_accuracy": float(value)}


STAGE = WidthStage()
WIDTH_REF = f"{__name__}:STAGE"
