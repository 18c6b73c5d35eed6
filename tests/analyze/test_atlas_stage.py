"""`protoscope atlas` on a tiny trained study: the store, the figures, resume after a kill, errors."""

import numpy as np
import pytest
import zarr

from conftest import tiny_study_dict
from protoscope import stages
from protoscope.cli import main
from protoscope.study import load_study

ATLAS = {"layers": ["layer3"], "images": 96, "grid": 4, "min_count": 3, "n_neighbors": 10,
         "adam_steps": 4, "pool_size": 8}


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    root = tmp_path_factory.mktemp("atlas")
    data = tiny_study_dict("store")  # relative to the study file: a copied folder is a whole workspace
    data["runs"] = [{"condition": "clrjit", "seed": 0}]
    data["atlas"] = ATLAS
    import yaml

    path = root / "study.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    stages.train(load_study(path))
    return path


def _copy(trained, tmp_path):
    import shutil

    shutil.copytree(trained.parent, tmp_path / "w")
    return tmp_path / "w" / "study.yaml"


def test_atlas_fills_its_store_and_draws_its_figures(trained, tmp_path, capsys):
    path = _copy(trained, tmp_path)
    assert main(["atlas", str(path)]) == 0
    printed = capsys.readouterr().out
    store = path.parent / "store"
    group = zarr.open_group(store / "atlas.zarr" / "runs" / "clrjit-s0" / "layer3", mode="r")
    assert group["done"][:].all() and list(group["epoch"][:]) == [0, 1, 2]
    layout, count = group["layout"][:], group["count"][:]
    assert layout.shape == (3, 96, 2) and np.nanmin(layout) >= 0 and np.nanmax(layout) <= 1
    assert (count.sum(axis=1) == 96).all()  # every image in exactly one cell, at every epoch
    direction, icon = group["direction"][:], group["icon"][:]
    filled = count >= ATLAS["min_count"]
    assert filled.any() and np.isnan(direction[~filled]).all() and np.isfinite(direction[filled]).all()
    assert (icon[~filled] == 0).all() and all(icon[e, c].std() > 0 for e, c in zip(*np.nonzero(filled)))
    assert sorted(set(group["label"][:])) == [0, 1, 2, 3]
    figures = store / "figures"
    assert "atlas_clrjit-s0_layer3.png" in printed
    for name in ("atlas_clrjit-s0_layer3.png", "atlas_map_clrjit-s0_layer3.png"):
        assert (figures / name).stat().st_size > 5_000
    assert sorted(p.name for p in (figures / "atlas" / "clrjit-s0" / "layer3").iterdir()) == [
        "epoch_000.png", "epoch_001.png", "epoch_002.png"]
    assert stages.atlas(load_study(path)) == 0  # stored: nothing to do


def test_a_killed_atlas_resumes_on_the_same_map(trained, tmp_path, monkeypatch):
    import protoscope.stages.atlases as jobs
    from protoscope.store.compare import differences

    reference = _copy(trained, tmp_path / "a")
    stages.atlas(load_study(reference))
    path = _copy(trained, tmp_path / "b")
    real, calls = jobs._draw_epoch, []

    def dies_at_the_second_epoch(*args, **kwargs):
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    monkeypatch.setattr(jobs, "_draw_epoch", dies_at_the_second_epoch)
    with pytest.raises(KeyboardInterrupt):
        stages.atlas(load_study(path))
    group = zarr.open_group(path.parent / "store" / "atlas.zarr" / "runs" / "clrjit-s0" / "layer3", mode="r")
    assert group["done"][:].tolist() == [True, False, False]
    monkeypatch.setattr(jobs, "_draw_epoch", real)
    assert stages.atlas(load_study(path)) == 1
    assert differences(reference.parent / "store", path.parent / "store") == []


def test_an_unknown_atlas_layer_lists_the_valid_ones(trained, tmp_path, capsys):
    import yaml

    path = _copy(trained, tmp_path)
    data = yaml.safe_load(path.read_text())
    data["atlas"]["layers"] = ["layer7"]
    path.write_text(yaml.safe_dump(data))
    assert main(["atlas", str(path)]) == 2
    assert "Unknown layer 'layer7'" in capsys.readouterr().err
    assert not (path.parent / "store" / "atlas.zarr").exists()


@pytest.mark.parametrize("layout", ["joint", "aligned"])
def test_runs_together_share_one_map(trained, tmp_path, capsys, layout):
    """A second run made of the first run's checkpoints, on one map with it. Joint: the twin's epoch e
    is the first run's epoch e + 1, and that checkpoint's activations land in the same region for
    both (UMAP puts duplicate points near each other, not on each other). Aligned: the twin is a
    copy, and its epoch 0, next to the first run's epoch 0 in the chain, lands where that one does.
    Two maps of their own would place them anywhere relative to each other."""
    import shutil

    import yaml

    path = _copy(trained, tmp_path)
    runs = path.parent / "store" / "runs"
    (tmp_path / "twin").mkdir()
    shift = 1 if layout == "joint" else 0
    for epoch in (0, 1):
        shutil.copy(runs / "clrjit-s0" / f"epoch_{epoch + shift:03d}.safetensors",
                    tmp_path / "twin" / f"epoch_{epoch:03d}.safetensors")
    data = yaml.safe_load(path.read_text())
    data["runs"].append({"name": "twin", "path": str(tmp_path / "twin")})
    data["atlas"].update(together=[["clrjit-s0", "twin"]], epochs=[0, 1], layout=layout)
    path.write_text(yaml.safe_dump(data))
    assert main(["atlas", str(path)]) == 0
    assert "atlas_clrjit-s0+twin_layer3.png" in capsys.readouterr().out
    first, twin = (zarr.open_group(path.parent / "store" / "atlas.zarr" / "runs" / run / "layer3", mode="r")
                   for run in ("clrjit-s0", "twin"))
    same = np.linalg.norm(first["layout"][shift] - twin["layout"][0], axis=1)  # one checkpoint, twice
    other = np.linalg.norm(first["layout"][1 - shift] - twin["layout"][0], axis=1)  # two checkpoints
    # aligned UMAPs tie neighbours loosely (umap-learn's regularisation 0.01): measured 0.03-0.06 vs 0.21-0.24
    # across thread counts, where joint puts the duplicates together (0.002 vs 0.20)
    bound, ratio = (0.05, 3) if layout == "joint" else (0.1, 2)
    assert np.median(same) < bound and np.median(same) < np.median(other) / ratio, (np.median(same), np.median(other))
    assert twin.attrs["map_runs"] == ["clrjit-s0", "twin"]


def test_an_unknown_run_in_a_shared_map_is_named(trained, tmp_path, capsys):
    import yaml

    path = _copy(trained, tmp_path)
    data = yaml.safe_load(path.read_text())
    data["atlas"]["together"] = [["clrjit-s0", "clrjit-s9"]]
    path.write_text(yaml.safe_dump(data))
    assert main(["atlas", str(path)]) == 2
    assert "unknown runs ['clrjit-s9']" in capsys.readouterr().err
