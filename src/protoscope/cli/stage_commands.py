"""The commands that run one stage of a study (or all of them), each with what it shows afterwards.

Each is declared by `stage_command`: its docstring, its verb, and a `show(study, result)`.
"""

from __future__ import annotations

from .. import stages
from .app import out, stage_command
from .tables import print_frame, print_paths, print_summary, print_table


def _show_checkpoints(s, result) -> None:
    out.print(f"checkpoints in [bold]{s.store / 'runs'}[/]")


def _show_probes(s, result) -> None:
    print_summary(s)


def _show_rsa(s, result) -> None:
    from ..report.rsa import rsa_figures
    from ..store import MetricsTable

    print_paths(rsa_figures(s, MetricsTable(s.store).read(), s.store / "figures"))


def _show_alignment(s, result) -> None:
    from ..report.align import align_figures, matching_table
    from ..store import MetricsTable

    metrics = MetricsTable(s.store).read()
    rows = matching_table(metrics)
    if not rows.empty:
        print_frame("Matched correlation of units (mean over units; unpaired: below the threshold)", rows, 3,
                    left={"pair", "epoch", "layer"})
    print_paths(align_figures(s, metrics, s.store / "figures"))


def _show_trust(s, metrics) -> None:
    from ..report.trust import trust_figures, trust_table

    rows = trust_table(metrics)
    if not rows.empty:
        print_frame("Trust of the prototypes (means over live units; share: trustworthy)", rows, 2,
                    left={"run", "layer", "epoch"})
    print_paths(trust_figures(s, metrics, s.store / "figures"))


def _show_tuning(s, metrics) -> None:
    from ..report.tuning import tuning_figures, tuning_table

    rows = tuning_table(metrics)
    if not rows.empty:
        print_frame("Tuning: mean over runs and responding units (colour: η² of hue; orientation: 1 − circular "
                    "variance)", rows, 3, left={"condition", "layer"})
    print_paths(tuning_figures(s, metrics, s.store / "figures"))


def _show_atlases(s, result) -> None:
    from ..report.atlas import atlas_figures

    print_paths(path for path in atlas_figures(s, s.store / "figures") if "atlas_" in path.name)


def _show_width_study(s, metrics) -> None:
    from ..report.figures import width_study

    means = metrics.groupby(["layer", "space", "metric"])["value"].mean().unstack()
    rows = ([family, size, f"{row.get('width_original_accuracy', float('nan')):.3f}",
             f"{row.get('width_new_accuracy', float('nan')):.3f}"] for (family, size), row in means.iterrows())
    print_table("Width study: test accuracy, mean over seeds", ("family", "width", "original task", "new task"),
                rows, left={"family"})
    print_paths(width_study(metrics, s.store / "figures" / "width_study"))


def _show_prototype_metrics(s, count) -> None:
    from ..report.prototype_metrics import prototype_metric_figures
    from ..report.prototypes import prototype_figures
    from ..store import MetricsTable

    out.print(f"{count} (run, layer, space) results computed now; metrics in [bold]{s.store / 'metrics' / 'analyze'}[/]")
    figures = s.store / "figures"
    paths = prototype_metric_figures(MetricsTable(s.store).read("analyze"), figures, s.layers)
    print_paths(paths + prototype_figures(s, figures))


stage_command("train", stages.train, _show_checkpoints, """Train the study's runs with SimCLR, one checkpoint per epoch (epoch 0 = init).

    Interrupted runs resume after their last finished epoch.

    Example: protoscope train study.yaml --run clrjit-s0
    """, writes=("checkpoints",))  # `protoscope watch` may follow it on the same store

stage_command("probe", stages.probe, _show_probes, """Fit linear probes on frozen features of every checkpoint; results go to the metrics table.

    Example: protoscope probe study.yaml
    """)

stage_command("analyze", stages.analyze, _show_prototype_metrics, """Prototype metrics and their figures: diversity, rate of change and re-evolution consistency.

    Every stored prototype is masked by its receptive field and compared in each space of the study's
    `analyze:` section (pixels, a pretrained CNN, a checkpoint of the study) with each distance (mse,
    cosine). Only what is missing is computed; embeddings are stored in STORE/embeddings.zarr, per-unit
    values in STORE/unit_metrics.zarr, the rest in the metrics table. Then the figures are drawn.

    Example: protoscope analyze study.yaml
    """)

stage_command("rsa", stages.rsa, _show_rsa, """RDMs of a fixed probe set at every checkpoint and layer, their change over training, and figures.

    Settings come from the study's `rsa:` section (probe images, layers, distance, comparisons).
    Activations are stored once in STORE/activations.zarr, RDMs in STORE/rsa/, metrics in the table.

    Example: protoscope rsa study.yaml --run clrjit-s0
    """)

stage_command("align", stages.align, _show_alignment, """Convergent learning: align the units of paired runs, and of every epoch with a run's last one.

    Settings come from the study's `align:` section (pairs, epochs, tracked runs, thresholds,
    penalties); by default every pair of runs with the same condition is aligned at its last
    common epoch. Results go to STORE/align/ and the metrics table, figures to STORE/figures/.

    Example: protoscope align study.yaml

    Example: protoscope align study.yaml --run clrjit-s0   (only the pairs and tracks with this run)
    """)

stage_command("trust", stages.trust, _show_trust, """Trust scores of every stored prototype, judged by the stimulus set: path similarity, spectral
    naturalness, robustness, natural ratio, plausibility and transfer, and the share of prototypes
    that pass the study's `trust:` thresholds.

    One job per (run, epoch). Plausibility embeds the prototypes in another run's last checkpoint
    (`trust.judge`); transfer reads the pair's stored alignment at that epoch (run `align` first).
    Per-unit scores go to STORE/trust.zarr, means and shares to the metrics table.

    Example: protoscope trust study.yaml --run clrjit-s0
    """)

stage_command("tuning", stages.tuning, _show_tuning, """What each unit is tuned to at every checkpoint: hue, orientation, spatial frequency and contrast.

    Every unit of every studied layer is read at its position (the centre cell) in one batched pass
    over a stimulus set made once: the rsa stimulus set's first images painted in 12+ hues at their
    own luminance, and grey gratings over orientations, frequencies, phases and contrasts. Settings
    come from the study's `tuning:` section (defaults when it has none). Per-unit indices and curves
    go to STORE/tuning.zarr, layer means to the metrics table, the figure to STORE/figures/.

    Example: protoscope tuning study.yaml --run keepclr-s0
    """)

stage_command("atlas", stages.atlas, _show_atlases, """Activation atlases over training: one UMAP map per (run, layer) shared by every epoch, a grid of
    whitened mean activations per epoch, and an icon drawn for every cell (all cells in one batched run).

    Settings come from the study's `atlas:` section (defaults: the last studied layer, every epoch,
    2000 images, a 15 x 15 grid). Results go to STORE/atlas.zarr, figures to STORE/figures/ (and one
    PNG per epoch under STORE/figures/atlas/RUN/LAYER/).

    Example: protoscope atlas study.yaml --run clrjit-s0
    """)

stage_command("width", stages.width, _show_width_study, """The width study: nets of several widths (fully connected at a constant parameter count, and
    convolutional) trained on an original task, frozen, and read by a linear classifier on a new task.

    Settings come from the study's `width:` section (default: translated digits, where -> what,
    widths 8-128, 3 seeds). Results go to the metrics table, the figure to STORE/figures/width_study.png.

    Example: protoscope width study.yaml
    """, per_run=False)

stage_command("run", stages.run, print_summary, """Run every stage of a study that is not yet stored (train, probe, evolve, analyze, rsa, align, trust, report).

    Example: protoscope run study.yaml

    Example: protoscope run study.yaml --executor ray --ray-address 10.0.0.5:6379
    """, per_run=False)
