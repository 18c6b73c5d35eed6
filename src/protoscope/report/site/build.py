"""`protoscope report`: the study as a static site, ``STORE/site/``, that opens from disk.

Layout of the site::

    index.html site.js site.css          the page (assets/, copied)
    data/index.js                        runs, layers, epochs, coverage, headline tables, figures
    data/<r>/<l>/units.js                one (run, layer) over training: scores, change, partners …
    data/<r>/<l>/e<epoch>.js             one epoch: traces, top stimulus images, histograms
    img/<r>/<l>/e<epoch>_r<repeat>.png   sprite sheet of every unit's prototype (…_m.png: masked;
                                          …_c<k>.png: units 64k and on, in a layer of more than 64)
    img/<r>/<l>/e<epoch>_mask.png        the receptive-field mask (a sheet when masks are per unit)
    img/stimuli.png                        the stimulus images, a sheet per 64 (img/stimuli_c<k>.png after the first)
    img/atlas/<r>/<l>/e<epoch>.png       the atlas at that epoch
    figures/                             every PNG figure of STORE/figures

Data files are scripts (``protoscope.receive(key, {...})``), not JSON fetched by the page: browsers
refuse `fetch` from file:// pages, and a script tag loads from disk anywhere. Runs and layers get
short ids (r0, l0) in paths, so no run name ever becomes part of a file name or a URL unescaped.
Files whose sources did not change are not written again (`sprites.Manifest`).
"""

from __future__ import annotations

import json
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ...atomic import write_text
from ...store import MetricsTable
from . import sprites, units
from .sprites import Manifest, fingerprint
from ..rf_view import rf_box
from .tables import headline_tables

ASSETS = Path(__file__).parent / "assets"


@dataclass
class SiteResult:
    path: Path
    written: int = 0
    seconds: float = 0.0
    files: list[str] = field(default_factory=list)


def write_if_changed(site: Path, relative: str, text: str, result: SiteResult) -> None:
    """Write a file (atomically) only when its content changed."""
    path = site / relative
    if path.is_file() and path.read_text() == text:
        return
    write_text(path, text)
    result.written += 1


def script(key: str, data) -> str:
    # ensure_ascii: no raw U+2028 or '<' surprises; the file is JavaScript read by a script tag
    return f"protoscope.receive({json.dumps(key)}, {json.dumps(data, ensure_ascii=True, allow_nan=False)});\n"


def write_site(study, out: Path | None = None) -> SiteResult:
    """Write (or bring up to date) the study's site; returns where, and how many files were written."""
    started = time.perf_counter()
    store = Path(study.store)
    site = Path(out) if out else store / "site"
    site.mkdir(parents=True, exist_ok=True)
    result, manifest = SiteResult(site), Manifest(site)
    for asset in sorted(ASSETS.iterdir()):
        write_if_changed(site, asset.name, asset.read_text(), result)
    ids = _ids(study, store)
    index = {"study": study.name, "question": study.question, "layers": ids["layers"], "runs": [], "atlases": []}
    probe = _stimulus_sheet(store, site, manifest)
    index["probe"] = probe
    names = [run.name for run in study.runs]
    partners = {layer: units.alignment_partners(store, names, layer) for layer in ids["layers"]}
    for run in study.runs:
        index["runs"].append(_run_entry(study, store, site, run, ids, partners, manifest, result, probe))
    index["atlases"] = _atlases(store, site, ids, manifest)
    metrics = MetricsTable(store).read()
    index["tables"] = headline_tables(metrics, list(study.layers))
    index["coverage"] = _coverage(index)
    index["figures"] = _figures(store, site, result)
    index["provisional"] = _provisional(store)
    write_if_changed(site, "data/index.js", script("index", index), result)
    result.written += manifest.written
    manifest.save()
    result.seconds = time.perf_counter() - started
    return result


def _provisional(store: Path) -> dict | None:
    """{through: {run: epoch}, results: [...]} when the store is `watch`'s provisional one (its
    summaries computed on the epochs so far, `stages/provisional.py`): the pages mark them."""
    path = store / "PROVISIONAL.json"
    return json.loads(path.read_text()) if path.is_file() else None


def _ids(study, store: Path) -> dict:
    """Short ids for run and layer names, stable for a study: the order of the study file, then the store."""
    from ...store.arrays import ArrayStore

    layers = list(study.layers)
    arrays = ArrayStore(store / "arrays.zarr")
    for run in arrays.runs() if (store / "arrays.zarr").is_dir() else []:
        layers += [layer for layer in arrays.layers(run) if layer not in layers]
    return {"runs": {run.name: f"r{i}" for i, run in enumerate(study.runs)},
            "layers": {layer: f"l{i}" for i, layer in enumerate(layers)}}


def _run_entry(study, store: Path, site: Path, run, ids: dict, partners: dict, manifest: Manifest,
               result: SiteResult, probe: dict | None) -> dict:
    from ...nets.checkpoint_files import run_checkpoints

    checkpoints = sorted(run_checkpoints(study, run))
    entry = {"id": ids["runs"][run.name], "name": run.name, "condition": run.condition, "seed": run.seed,
             "planned_epochs": None if run.path is not None else run.epochs, "checkpoints": checkpoints, "layers": []}
    root = store / "arrays.zarr" / "runs" / run.name
    groups = {name: units.open_group(root / name) for name in ids["layers"]}
    for layer, group in ((name, g) for name, g in groups.items() if g is not None):
        arrays = units.LayerArrays.read(group)
        where = f"{entry['id']}/{ids['layers'][layer]}"
        activations = _activations(store, run.name, layer, int(group.attrs["n_units"]), probe)
        layer_entry = _layer_sprites(arrays, site, where, manifest)
        layer_entry.update({"name": layer, "id": ids["layers"][layer], "has_top": activations is not None,
                            "top_epochs": sorted(activations.done) if activations is not None else []})
        data = units.layer_data(store, run.name, layer, arrays, _named(partners[layer].get(run.name, {}), ids))
        write_if_changed(site, f"data/{where}/units.js", script(f"units/{where}", data), result)
        _epoch_files(arrays, site, where, activations, manifest)
        entry["layers"].append(layer_entry)
    return entry


def _named(partners: dict, ids: dict) -> dict:
    return {ids["runs"][other]: value for other, value in partners.items() if other in ids["runs"]}


def _layer_sprites(arrays: units.LayerArrays, site: Path, where: str, manifest: Manifest) -> dict:
    """Every done (epoch, repeat) as a plain and a masked sheet, every RF epoch as a mask image."""
    group, epochs, done = arrays.group, arrays.epochs, arrays.done
    n_units, size = int(group.attrs["n_units"]), int(group.attrs["image_size"])
    cell = sprites.cell_size(size)
    rf_done = np.asarray(group["rf_done"][:]) if "rf_done" in group else np.zeros(len(epochs), bool)
    per_unit = "rf_mask_unit" in group
    masks = [np.asarray(group["rf_mask"][e]) for e in np.flatnonzero(rf_done)]
    for e, epoch in enumerate(epochs):
        mask = None
        if rf_done[e]:
            mask = np.asarray(group["rf_mask_unit"][e] if per_unit else group["rf_mask"][e])
            _mask_image(mask, site, f"img/{where}/e{epoch}_mask.png", cell, manifest)
        for r in np.flatnonzero(done[e]):
            _prototype_sheets(group, arrays.score[e, r], (e, r), mask, f"img/{where}/e{epoch}_r{r}", cell, site,
                              manifest)
    return {"units": n_units, "image_size": size, "cell": cell, "columns": sprites.chunk_columns(n_units),
            "chunk": sprites.CHUNK, "epochs": epochs, "repeats": int(done.shape[1]), "done": done.tolist(),
            "rf": [epoch for epoch, d in zip(epochs, rf_done) if d], "per_unit_rf": per_unit,
            "rf_box": rf_box(masks, size)}


def _prototype_sheets(group, score, at: tuple[int, int], mask, block: str, cell: int, site: Path,
                      manifest: Manifest) -> None:
    """The plain and masked sheets of one (epoch, repeat), made together when any of them is stale."""
    stamp = fingerprint(score, cell, mask)
    names = [name for suffix in ("", "_m") for name, _ in sprites.chunked(f"{block}{suffix}.png", len(score))]
    if not any(manifest.stale(name, stamp) for name in names):
        return
    images = np.asarray(group["prototype"][at])
    sprites.write_sheets(images, f"{block}.png", cell, site, manifest, stamp)
    sprites.write_sheets(sprites.masked(images, mask), f"{block}_m.png", cell, site, manifest, stamp)


def _mask_image(mask: np.ndarray, site: Path, relative: str, cell: int, manifest: Manifest) -> None:
    """The layer's mask as one image, or every unit's as sheets (chunked as the prototypes')."""
    stamp = fingerprint(mask, cell)
    names = [name for name, _ in sprites.chunked(relative, len(mask))] if mask.ndim == 3 else [relative]
    if not any(manifest.stale(name, stamp) for name in names):
        return
    grey = (np.clip(np.nan_to_num(mask), 0, 1) * 255).round().astype(np.uint8)
    rgb = np.repeat(grey[..., None], 3, axis=-1)
    sprites.write_sheets(rgb if rgb.ndim == 4 else rgb[None], relative, cell, site, manifest, stamp)


@dataclass
class StimulusActivations:
    """The stored stimulus activations of one (run, layer), per channel: (images, units) at a done epoch."""

    array: object
    epochs: list[int]
    done: set[int]

    def at(self, epoch: int) -> np.ndarray | None:
        return np.asarray(self.array[self.epochs.index(epoch)]) if epoch in self.done else None


def _activations(store: Path, run: str, layer: str, n_units: int, probe: dict | None) -> StimulusActivations | None:
    """None when not stored, not one value per channel (`rsa.features: flatten`), or of another stimulus set
    than the sheet's."""
    group = units.open_group(store / "activations.zarr" / "runs" / run / layer)
    if probe is None or group is None or int(group.attrs.get("n_units", -1)) != n_units \
            or group.attrs.get("probe") != probe["settings"]:
        return None
    epochs = [int(e) for e in group.attrs["epochs"]]
    return StimulusActivations(group["activation"], epochs, {e for e, d in zip(epochs, group["done"][:]) if d})


def _epoch_files(arrays: units.LayerArrays, site: Path, where: str, activations: StimulusActivations | None,
                 manifest: Manifest) -> None:
    for e, epoch in enumerate(arrays.epochs):
        if not arrays.done[e].any():
            continue
        acts = activations.at(epoch) if activations is not None else None
        relative = f"data/{where}/e{epoch}.js"
        stamp = fingerprint(arrays.score[e], acts if acts is not None else 0)
        if not manifest.stale(relative, stamp):
            continue
        write_text(site / relative, script(f"epoch/{where}/{epoch}", units.epoch_data(arrays.group, e, acts)))
        manifest.record(relative, stamp)


def _stimulus_sheet(store: Path, site: Path, manifest: Manifest) -> dict | None:
    """The stimulus set the stored activations were computed on (their recorded settings, not the study's
    current ones), as sheets of `sprites.CHUNK` images; None when no activations are stored."""
    from ...data.datasets import labelled
    from ...study import DataSpec

    groups = sorted((store / "activations.zarr" / "runs").glob("*/*/zarr.json"))
    if not groups:
        return None
    first = units.open_group(groups[0].parent)
    settings, count = first.attrs["probe"], int(first.attrs["n_images"])
    cell_px = sprites.cell_size(int(settings["data"]["image_size"]))
    stamp = fingerprint(settings, cell_px)
    if any(manifest.stale(name, stamp) for name, _ in sprites.chunked("img/stimuli.png", count)):
        images = labelled(DataSpec(**settings["data"]), "probe", settings["images"]).images.permute(0, 2, 3, 1).numpy()
        # chunked: a unit page shows a few of them and loads their chunks only
        sprites.write_sheets(images, "img/stimuli.png", cell_px, site, manifest, stamp)
    return {"count": count, "cell": cell_px, "columns": sprites.chunk_columns(count), "chunk": sprites.CHUNK,
            "settings": settings,
            "labels": np.asarray(first["label"][:]).tolist(), "categories": list(first.attrs["categories"])}


def _atlases(store: Path, site: Path, ids: dict, manifest: Manifest) -> list[dict]:
    from ..atlas import mosaic

    found = []
    root = store / "atlas.zarr" / "runs"
    for run, run_id in ids["runs"].items():
        for layer, layer_id in ids["layers"].items():
            group = units.open_group(root / run / layer)
            if group is None or "done" not in group:
                continue
            done = np.asarray(group["done"][:])
            settings = group.attrs["settings"]
            epochs = []
            for e, epoch in enumerate(int(x) for x in group["epoch"][:]):
                if not done[e]:
                    continue
                relative = f"img/atlas/{run_id}/{layer_id}/e{epoch}.png"
                stamp = fingerprint(np.asarray(group["score"][e]), np.asarray(group["count"][e]))
                if manifest.stale(relative, stamp):
                    image = mosaic(np.asarray(group["icon"][e]), np.asarray(group["count"][e]), settings["grid"],
                                   settings["min_count"])
                    sprites.write_png(image, site / relative)
                    manifest.record(relative, stamp)
                epochs.append({"epoch": epoch, "counts": np.asarray(group["count"][e]).tolist()})
            found.append({"run": run_id, "layer": layer_id, "grid": settings["grid"], "epochs": epochs,
                          "map_runs": [ids["runs"].get(r, r) for r in group.attrs.get("map_runs", [run])]})
    return found


def _coverage(index: dict) -> dict:
    """What is computed and what is missing, per run and layer, as a table."""
    rows = []
    for run in index["runs"]:
        planned = run["planned_epochs"]
        checkpoints = f"{len(run['checkpoints'])}/{planned + 1}" if planned is not None else str(len(run["checkpoints"]))
        for layer in run["layers"]:
            done = np.asarray(layer["done"], bool)
            rows.append([run["name"], layer["name"], checkpoints, f"{int(done.sum())}/{done.size}",
                         f"{len(layer['rf'])}/{len(layer['epochs'])}", "yes" if layer["has_top"] else "no"])
        if not run["layers"]:
            rows.append([run["name"], "—", checkpoints, "0", "0", "no"])
    return {"title": "What is computed", "note": "prototype jobs: (epoch, repeat) blocks done of those planned",
            "columns": ["run", "layer", "checkpoints", "prototype jobs", "RF masks", "stimulus activations"],
            "rows": rows}


WEB_WIDTH = 1600  # px: the site's copy of a wider figure is scaled down (the store keeps the full PNG and PDF)
WEB_BYTES, HEAVY_WIDTH = 1_000_000, 1000  # a heavier figure (a matrix of noise-like cells) is scaled to this width


def _figures(store: Path, site: Path, result: SiteResult) -> list[str]:
    """Every PNG figure into the site, wide ones scaled to `WEB_WIDTH`; only new or changed ones
    (a copy carries its source's modification time)."""
    source = store / "figures"
    names = []
    for path in sorted(source.glob("*.png")) if source.is_dir() else []:
        target = site / "figures" / path.name
        if not target.is_file() or target.stat().st_mtime_ns != path.stat().st_mtime_ns:
            target.parent.mkdir(parents=True, exist_ok=True)
            _web_copy(path, target)
            result.written += 1
        names.append(path.name)
    return names


def _web_copy(path: Path, target: Path) -> None:
    """`path` at most `WEB_WIDTH` wide (`HEAVY_WIDTH` when it weighs over `WEB_BYTES`), written
    atomically, with the source's times."""
    import os

    from PIL import Image

    from ...atomic import atomic_path

    with Image.open(path) as image:
        width = min(image.width, WEB_WIDTH if path.stat().st_size <= WEB_BYTES else HEAVY_WIDTH)
        with atomic_path(target) as tmp:
            if width == image.width:
                shutil.copyfile(path, tmp)
            else:
                flat = Image.new("RGB", image.size, "white")
                flat.paste(image, mask=image.getchannel("A") if image.mode == "RGBA" else None)
                height = round(image.height * width / image.width)
                flat.resize((width, height), Image.LANCZOS).save(tmp, format="PNG", optimize=True)
    stat = path.stat()
    os.utime(target, ns=(stat.st_atime_ns, stat.st_mtime_ns))
