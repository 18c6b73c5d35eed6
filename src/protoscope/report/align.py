"""Figures of convergent learning (the seed's Figures 3, 4, 10 and its Table 1, plus tracking and CKA).

- align_means: each run's units sorted by mean activation, one panel per layer;
- align_matching: matched correlations sorted high to low, bipartite (solid) and
  semi-matching (dashed), one panel per layer; the per-layer means in the legend;
- align_layers: mean matched correlation per layer (which layers converge most);
- align_sparse: the sparse-prediction loss and significant weights per unit over the L1 penalty;
- align_clusters: the mapping block B = [I, W; Wᵀ, I] permuted by hierarchical clustering,
  and the thresholded correlation graph permuted by spectral clusters;
- align_track: each epoch against the final one (self-correlation, units whose identity has appeared);
- align_cka: linear CKA between every (run, layer), and between every (epoch, layer) of a tracked run.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd

from .figures import plt, save


def _results(study) -> tuple[list[Path], list[Path], list[Path]]:
    from ..store.alignment import align_root

    root = align_root(study)
    pairs = sorted(root.glob("epoch_*/*~*/*.nc"))
    summaries = sorted(root.glob("epoch_*/summary.nc"))
    tracks = sorted((root / "track").glob("*/*.nc"))
    return pairs, summaries, tracks


def _layer_order(study, layers) -> list[str]:
    known = [l for l in (study.align.layers or study.layers) if l in layers]
    return known + sorted(set(layers) - set(known))


def matching_table(metrics: pd.DataFrame) -> pd.DataFrame:
    """Per pair, epoch and layer: mean matched correlation (bipartite, semi), unpaired share, MI matching."""
    m = metrics[metrics["metric"].isin(["align_corr_bipartite_mean", "align_corr_semi_mean",
                                        "align_unpaired_bipartite", "align_mi_bipartite_mean"])]
    if m.empty:
        return pd.DataFrame()
    wide = m.pivot_table(index=["run", "epoch", "layer"], columns="metric", values="value", sort=False).reset_index()
    names = {"run": "pair", "align_corr_bipartite_mean": "bipartite", "align_corr_semi_mean": "semi",
             "align_unpaired_bipartite": "unpaired", "align_mi_bipartite_mean": "MI bipartite (nats)"}
    wide = wide.rename(columns=names)
    return wide[["pair", "epoch", "layer"] + [c for c in list(names.values())[1:] if c in wide.columns]]


def _open(path: Path):
    from ..store.alignment import read_result

    return read_result(path)


def mean_curves(study, summary: Path, path: Path) -> list[Path]:
    ds = _open(summary)
    blocks = json.loads(ds.attrs["blocks"])
    layers = _layer_order(study, json.loads(ds.attrs["layers"]))
    runs = json.loads(ds.attrs["runs"])
    fig, axes = plt.subplots(1, len(layers), figsize=(3.6 * len(layers), 3.2), squeeze=False)
    for ax, layer in zip(axes[0], layers):
        for k, run in enumerate(runs):
            values = np.sort(ds[f"mean_{blocks.index(f'{run}/{layer}')}"].values)[::-1]
            ax.plot(values, "o-", ms=2.5, lw=1.2, color=f"C{k}", label=run)
        ax.set_title(layer)
        ax.set_xlabel("unit (sorted)")
        ax.grid(alpha=0.3)
    axes[0][0].set_ylabel("mean activation")
    axes[0][0].legend(fontsize=7)
    fig.suptitle(f"Mean activation of each unit, sorted (epoch {ds.attrs['epoch']})", y=1.03)
    return save(fig, path)


def matching_curves(study, pairs: list[Path], path: Path) -> list[Path]:
    by_layer: dict[str, list] = {}
    for p in pairs:
        ds = _open(p)
        by_layer.setdefault(ds.attrs["layer"], []).append(ds)
    layers = _layer_order(study, by_layer)
    fig, axes = plt.subplots(1, len(layers), figsize=(3.6 * len(layers), 3.3), squeeze=False, sharey=True)
    for ax, layer in zip(axes[0], layers):
        for k, ds in enumerate(by_layer[layer]):
            label = f"{ds.attrs['run_a']} ~ {ds.attrs['run_b']} (epoch {ds.attrs['epoch']})"
            for method, style in (("bipartite", "-"), ("semi", "--")):
                if f"value_{method}" not in ds:
                    continue
                partner = ds[f"partner_{method}"].values
                values = np.sort(ds[f"value_{method}"].values[partner >= 0])[::-1]
                ax.plot(values, style, color=f"C{k}", lw=1.5,
                        label=f"{method} {values.mean():.2f}" + (f": {label}" if method == "bipartite" else ""))
        ax.axhline(by_layer[layer][0].attrs["threshold"], color="grey", lw=0.8, ls=":")
        ax.set_title(layer)
        ax.set_xlabel("unit (sorted by matched correlation)")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=6)
    axes[0][0].set_ylabel("correlation with its partner")
    fig.suptitle("Matched units: bipartite (one-to-one, solid) and semi-matching (best partner, dashed)", y=1.03)
    return save(fig, path)


def layer_means(study, metrics: pd.DataFrame, path: Path) -> list[Path]:
    m = metrics[metrics["metric"].isin(["align_corr_bipartite_mean", "align_corr_semi_mean"])]
    layers = _layer_order(study, m["layer"].unique())
    fig, ax = plt.subplots(figsize=(1.2 * len(layers) + 2.5, 3.2))
    for k, ((pair, epoch), group) in enumerate(m.groupby(["run", "epoch"], sort=True)):
        for metric, style in (("align_corr_bipartite_mean", "o-"), ("align_corr_semi_mean", "s--")):
            g = group[group["metric"] == metric].set_index("layer").reindex(layers)
            ax.plot(layers, g["value"], style, color=f"C{k}",
                    label=f"{pair} e{epoch} {'bipartite' if 'bipartite' in metric else 'semi'}")
    ax.set_ylabel("mean matched correlation")
    ax.set_ylim(0, 1)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=6)
    ax.set_title("How well units converge, per layer")
    return save(fig, path)


def sparse_table(study, ds, path: Path) -> list[Path]:
    layers = _layer_order(study, list(ds))
    fig, (ax, bx) = plt.subplots(1, 2, figsize=(8.5, 3.2))
    for k, layer in enumerate(layers):
        d = ds[layer]
        if "sparse_loss" not in d:
            continue
        order = np.argsort(d["penalty"].values)
        pen = d["penalty"].values[order]
        x = np.where(pen > 0, pen, np.nan)
        ax.semilogx(x, d["sparse_loss"].values[order], "o-", color=f"C{k}", label=layer)
        bx.semilogx(x, d["sparse_weights"].values[order].mean(1), "o-", color=f"C{k}", label=layer)
    ax.axhline(0.5, color="grey", ls=":", lw=0.8)
    ax.set_xlabel("L1 penalty")
    ax.set_ylabel("prediction loss ½E‖b − Wa‖² (0.5 = none)")
    bx.set_xlabel("L1 penalty")
    bx.set_ylabel("significant weights per predicted unit")
    for a in (ax, bx):
        a.grid(alpha=0.3)
    ax.legend(fontsize=7)
    first = next(iter(ds.values()))
    fig.suptitle(f"Sparse prediction {first.attrs['run_a']} → {first.attrs['run_b']} (the seed's Table 1)")
    return save(fig, path)


def cluster_matrices(study, ds, path: Path) -> list[Path]:
    layers = [l for l in _layer_order(study, list(ds)) if "mapping_order" in ds[l]]
    if not layers:
        return []
    fig, axes = plt.subplots(2, len(layers), figsize=(3.3 * len(layers), 6.6), squeeze=False)
    for col, layer in enumerate(layers):
        d = ds[layer]
        n_a = d.sizes["a"]
        penalties = d["penalty"].values
        k = int(np.argmin(np.abs(np.log10(np.maximum(penalties, 1e-300)) - np.log10(max(d.attrs["cluster_penalty"], 1e-300)))))
        w = np.abs(d["coef"].values[k]).T  # (A, B), scaled to at most 1 as the clustering sees it
        w = w / max(w.max(), 1e-300)
        block = np.block([[np.eye(n_a), w], [w.T, np.eye(w.shape[1])]])
        order = d["mapping_order"].values
        axes[0][col].imshow(block[np.ix_(order, order)], cmap="magma", vmin=0, vmax=1)
        axes[0][col].set_title(f"{layer}: |B| = [I, W; Wᵀ, I] (W / max), clustered", fontsize=8)
        combined = np.block([[d["within_a"].values, d["between"].values], [d["between"].values.T, d["within_b"].values]])
        graph = np.where(combined >= d.attrs["tau"], combined, 0.0)
        order = d["spectral_order"].values
        axes[1][col].imshow(graph[np.ix_(order, order)], cmap="viridis", vmin=0, vmax=1)
        axes[1][col].set_title(f"{layer}: correlations ≥ τ, {d.sizes['cluster']} spectral clusters", fontsize=8)
        for row in (0, 1):
            axes[row][col].set_xticks([])
            axes[row][col].set_yticks([])
    first = ds[layers[0]]
    fig.suptitle(f"Many-to-many groups, {first.attrs['run_a']} and {first.attrs['run_b']} (both nets' units)")
    return save(fig, path)


def track_curves(study, tracks: list[Path], path: Path) -> list[Path]:
    by_run: dict[str, dict[str, object]] = {}
    for p in tracks:
        if p.name == "cka.nc":
            continue
        ds = _open(p)
        by_run.setdefault(ds.attrs["run"], {})[ds.attrs["layer"]] = ds
    if not by_run:
        return []
    fig, axes = plt.subplots(len(by_run), 2, figsize=(8.5, 3.3 * len(by_run)), squeeze=False, layout="constrained")
    for row, (run, layers) in enumerate(sorted(by_run.items())):
        for k, layer in enumerate(_layer_order(study, layers)):
            ds = layers[layer]
            epochs = ds["epoch"].values
            axes[row][0].plot(epochs, ds["mean_self_corr"].values, "o-", ms=3, color=f"C{k}", label=layer)
            axes[row][0].plot(epochs, ds["matched_mean"].values, ":", color=f"C{k}")
            ident = ds["identity_epoch"].values
            axes[row][1].plot(epochs, [np.mean((ident >= 0) & (ident <= e)) for e in epochs], "o-", ms=3,
                              color=f"C{k}", label=layer)
        final = ds.attrs["final_epoch"]
        axes[row][0].set_ylabel(f"{run}\ncorr with final epoch {final}")
        axes[row][0].set_title("same unit (solid), best one-to-one match (dotted)", fontsize=8)
        axes[row][1].set_ylabel("units with their final identity")
        axes[row][1].set_title(f"self-correlation ≥ {ds.attrs['threshold']} from then on", fontsize=8)
        for a in axes[row]:
            a.set_xlabel("epoch (0 = initialization)")
            a.grid(alpha=0.3)
        axes[row][0].legend(fontsize=7)
    fig.suptitle("When do units become what they finally are?")
    return save(fig, path)


def cka_matrices(study, summary: Path | None, track_cka: Path | None, path: Path) -> list[Path]:
    panels = [p for p in (summary, track_cka) if p is not None]
    if not panels:
        return []
    fig, axes = plt.subplots(1, len(panels), figsize=(5.2 * len(panels), 4.8), squeeze=False)
    for ax, p in zip(axes[0], panels):
        ds = _open(p)
        blocks = json.loads(ds.attrs["blocks"])
        # layer-major order: each layer's block holds its runs (or epochs) side by side
        layers = _layer_order(study, json.loads(ds.attrs["layers"]))
        order = sorted(range(len(blocks)), key=lambda k: (layers.index(blocks[k].rsplit("/", 1)[1]), k))
        blocks = [blocks[k] for k in order]
        image = ax.imshow(ds["cka_debiased"].values[np.ix_(order, order)], cmap="viridis", vmin=0, vmax=1)
        step = max(1, len(blocks) // 24)
        ax.set_xticks(range(0, len(blocks), step), blocks[::step], rotation=90, fontsize=6)
        ax.set_yticks(range(0, len(blocks), step), blocks[::step], fontsize=6)
        ax.set_title(f"debiased linear CKA, epoch {ds.attrs['epoch']}" if "epoch" in ds.attrs
                     else f"debiased linear CKA over training: {ds.attrs['run']} (epoch/layer)", fontsize=9)
        fig.colorbar(image, ax=ax, fraction=0.046)
    return save(fig, path)


def align_figures(study, metrics: pd.DataFrame, out: Path) -> list[Path]:
    """Every align figure for what is stored."""
    pairs, summaries, tracks = _results(study)
    paths: list[Path] = []
    if summaries:
        paths += mean_curves(study, summaries[-1], out / "align_means")
    if pairs:
        paths += matching_curves(study, pairs, out / "align_matching")
        paths += layer_means(study, metrics, out / "align_layers")
        # the seed's per-pair figures for the first pair at its last epoch
        first = sorted({(p.parent.parent.name, p.parent.name) for p in pairs})[-1]
        ds = {d.attrs["layer"]: d for d in (_open(p) for p in pairs if (p.parent.parent.name, p.parent.name) == first)}
        paths += sparse_table(study, ds, out / "align_sparse")
        paths += cluster_matrices(study, ds, out / "align_clusters")
    if tracks:
        paths += track_curves(study, tracks, out / "align_track")
    track_cka = next((p for p in tracks if p.name == "cka.nc"), None)
    paths += cka_matrices(study, summaries[-1] if summaries else None, track_cka, out / "align_cka")
    return paths
