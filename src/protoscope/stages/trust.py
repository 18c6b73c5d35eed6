"""The trust stage: every stored prototype scored against the stimulus set (`analyze.trust`).

One job per (run, epoch), every studied layer and repeat inside: the stimulus images pass once
through the checkpoint (truncated at the deepest layer), once through the aligned partner run's
checkpoint at the same epoch, and once (per process) through the judging run's last checkpoint.
Results: per-unit scores in `store.trust` and, per (layer, repeat), the means over live units and the
share of trustworthy prototypes in the metrics table (stage ``trust``), with the job's seconds.
Transfer needs the pair's stored alignment at that epoch (`align.epochs`); elsewhere it is NaN.
"""

from __future__ import annotations

import time

import numpy as np
import torch

from ..errors import UserError
from ..nets.checkpoints import load_into
from ..store import MetricsTable, layout
from ..store.arrays import ArrayStore
from ..store.trust import SCORES, TrustStore, path_array
from .base import StudyStage, build, checkpoints


def judge_run(study, run) -> str | None:
    """The run whose last checkpoint embeds `run`'s prototypes: `trust.judge`, else the first run of
    another condition, else the next other run; None in a one-run study."""
    if study.trust.judge is not None:
        return study.run(study.trust.judge).name
    others = [r for r in study.runs if r.name != run.name]
    pool = [r for r in others if r.condition != run.condition] or others
    return pool[0].name if pool else None


def partner_run(study, run) -> str | None:
    """The run `run` is aligned with (its first pair in `align.pairs`), whose matched units judge transfer."""
    from .alignment import align_pairs

    for a, b in align_pairs(study):
        if run.name in (a, b):
            return b if run.name == a else a
    return None


def partners(study, run: str, other: str, layer: str, epoch: int) -> list[int] | None:
    """Each unit's bipartite partner in `other` at `epoch` (-1: none), from the stored alignment."""
    from ..analyze.align.passes import pair_name
    from ..store.alignment import read_result

    root = layout.alignment(study) / f"epoch_{epoch:03d}"
    for a, b in ((run, other), (other, run)):
        path = root / pair_name(a, b) / f"{layer}.nc"
        if path.is_file():
            pair = read_result(path)
            matched = pair["partner_bipartite"].values.astype(int)
            if a == run:
                return matched.tolist()
            inverse = np.full(int(pair.sizes["unit_b"]), -1)
            inverse[matched[matched >= 0]] = np.flatnonzero(matched >= 0)
            return inverse.tolist()
    return None


class TrustStage(StudyStage):
    name = "trust"

    def settings(self, study) -> dict:
        from .activations import activation_settings

        return {"trust": study.trust.model_dump(mode="json"), "stimuli": activation_settings(study)["probe"]}

    def plan(self, study, runs):
        arrays = ArrayStore(layout.arrays(study))
        stored = arrays.runs()
        if not stored:
            raise UserError(f"No prototypes in {arrays.path}: run `protoscope evolve` first.")
        self.check_settings(study)
        jobs = []
        for run in self.runs(study, runs):
            layers = [layer for layer in study.layers if run.name in stored and arrays.has_layer(run.name, layer)]
            epochs = sorted({e for layer in layers for e, _ in arrays.done_jobs(run.name, layer)})
            jobs += [self.job((run.name, epoch), run.name) for epoch in epochs]
        return jobs

    def prepare(self, study, jobs) -> None:
        arrays, store = ArrayStore(layout.arrays(study)), TrustStore(layout.trust(study))
        for name in dict.fromkeys(job.key[0] for job in jobs):
            for layer in _layers(study, arrays, name):
                stored = arrays.settings(name, layer)
                earlier = study.layers[: study.layers.index(layer)]
                store.create(name, layer, stored["epochs"], stored["n_repeats"], stored["n_units"], earlier,
                             self.settings(study))

    def is_done(self, study, job) -> bool:
        run, epoch = job.key
        arrays, store = ArrayStore(layout.arrays(study)), TrustStore(layout.trust(study))
        return all(store.is_done(run, layer, epoch) for layer in _layers(study, arrays, run, epoch))

    def run(self, study, job, device, emit) -> dict:
        from ..analyze import trust as scores
        from ..analyze.activations import stimulus_set

        start = time.perf_counter()
        name, epoch = job.key
        run, spec = study.run(name), study.trust
        arrays, store, table = ArrayStore(layout.arrays(study)), TrustStore(layout.trust(study)), MetricsTable(study.store)
        layers = _layers(study, arrays, name, epoch)
        self.record_settings(study)
        images = stimulus_set(study).images.to(device)
        model = self._model(run, checkpoints(study, run)[epoch], device)
        other = partner_run(study, run)
        matched = {layer: partners(study, name, other, layer, epoch) for layer in layers} if other else {}
        matched = {layer: m for layer, m in matched.items() if m is not None}
        partner = self._model(study.run(other), checkpoints(study, study.run(other))[epoch], device,
                              "partner") if matched else None
        needed = study.layers[: max(study.layers.index(layer) for layer in layers) + 1]
        with scores.shared_passes(self.cached("passes", (study.model_dump_json(), str(device)), dict)):
            judge = scores.Judge(model, needed, images, embed=self._embedding(study, run, images, device),
                                 partner=partner, partner_layers=list(matched), k=spec.k, draws=spec.draws,
                                 seed=study.synth.seed)
            rows = []
            for layer in layers:
                rows += self._layer(study, judge, run, layer, epoch, arrays, store, matched.get(layer), device)
                emit(f"{layer} scored")
        rows.append(self.row(run, epoch=epoch, metric="trust_seconds", value=time.perf_counter() - start))
        table.write("trust", f"{name}/epoch_{epoch:03d}", rows)
        return {"layers": len(layers)}

    def _layer(self, study, judge, run, layer: str, epoch: int, arrays, store, matched, device) -> list[dict]:
        """Every repeat of one layer's prototypes at one epoch: its block of the store, its rows;
        `matched`: each unit's partner in the partner run (None: no transfer)."""
        from ..analyze.trust import trustworthy

        earlier = study.layers[: study.layers.index(layer)]
        stored = arrays.settings(run.name, layer)
        R, U = stored["n_repeats"], stored["n_units"]
        values = {name: np.full((R, U), np.nan, np.float32) for name in [*SCORES, *map(path_array, earlier)]}
        rows = []
        for repeat in sorted(r for e, r in arrays.done_jobs(run.name, layer) if e == epoch):
            job = arrays.read_job(run.name, layer, epoch, repeat)
            live = ~job["silent"].astype(bool)
            made = torch.as_tensor(job["prototype"]).permute(0, 3, 1, 2).float().div(255).to(device)
            found = judge.score(layer, list(range(U)), made, earlier, matched)
            ok = trustworthy(found, thresholds(study.trust))
            per_unit = {"path_similarity": found.path_mean, "spectral_naturalness": found.spectral_naturalness,
                        "robustness": found.robustness, "natural_ratio": found.natural_ratio,
                        "plausibility": found.plausibility, "transfer": found.transfer,
                        "trustworthy": ok.astype(np.float32),
                        **{path_array(e): v for e, v in found.path_similarity.items()}}
            for key, v in per_unit.items():
                if v is not None:
                    values[key][repeat] = np.where(live, v, np.nan)
            base = self.row(run, epoch=epoch, layer=layer, repeat=repeat)
            rows += [dict(base, metric=f"trust_{key}", value=_summary(key, values[key][repeat]))
                     for key in SCORES if key != "trustworthy"]
            rows.append(dict(base, metric="trust_share", value=float(ok[live].mean()) if live.any() else float("nan")))
        store.write(run.name, layer, epoch, values)
        return rows

    def _model(self, run, path, device, kind: str = "model"):
        """The run's architecture, built once per process, with `path`'s weights, in eval mode."""
        from .base import architecture

        model = self.cached(kind, (architecture(run), str(device)), lambda: build(run).to(device))
        return load_into(model, path).to(device).eval()

    def _embedding(self, study, run, images, device):
        """(judging net, its layer, the stimulus images' embedding), kept per process; None without one."""
        from ..analyze.trust import pooled

        name = judge_run(study, run)
        if name is None:
            return None
        judge = study.run(name)
        files = checkpoints(study, judge)
        last = files[max(files)]
        layer = study.layers[-1]

        def make():
            net = load_into(build(judge), last).to(device).eval()
            return net, layer, pooled(net, layer, images)

        stat = last.stat()
        return self.cached("embedding", (name, str(last), stat.st_mtime_ns, str(device), layer), make)


def thresholds(spec):
    """`trust:`'s thresholds as `analyze.trust.Thresholds`."""
    from ..analyze.trust import Thresholds

    return Thresholds(spec.path, spec.robustness, spec.spectral, spec.plausibility)


def _summary(key: str, values: np.ndarray) -> float:
    """A layer's value of a per-unit score: the median for the ratios (a few huge ones would rule a
    mean), else the mean; NaN when no live unit has it."""
    finite = values[np.isfinite(values)]
    if not len(finite):
        return float("nan")
    return float(np.median(finite) if key in ("spectral_naturalness", "natural_ratio", "transfer") else finite.mean())


def _layers(study, arrays: ArrayStore, run: str, epoch: int | None = None) -> list[str]:
    """The studied layers with stored prototypes of `run`; with `epoch`, those with a finished job there."""
    if run not in arrays.runs():
        return []
    stored = [layer for layer in study.layers if arrays.has_layer(run, layer)]
    return stored if epoch is None else [layer for layer in stored
                                         if any(e == epoch for e, _ in arrays.done_jobs(run, layer))]


STAGE = TrustStage()
