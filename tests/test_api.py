"""The in-memory API against the stages: each call on models in memory equals what its stage stores
for a study of the same checkpoints; bad input is a UserError that says what is valid."""

import json

import numpy as np
import pytest
import torch
import yaml
from torch import nn

import protoscope as ps
from protoscope import stages
from protoscope.errors import UserError
from protoscope.nets.checkpoints import checkpoint_name, epoch_files, load_into, save_state
from protoscope.nets.models import build_model
from protoscope.study import load_study

ARCH = {"arch": "resnet18", "width": 0.0625, "small_input": True}
SYNTH = {"repeats": 1, "pool_size": 16, "cma_generations": 1, "adam_steps": 3, "batch_size": 32,
         "rf": "unit", "rf_samples": 8}
ALIGN = {"mi_samples": 300, "penalties": [0.01], "sparse_iter": 200, "batch_size": 10}
# layout joint: one plain UMAP; the aligned one is the same call, but numba compiles it for ~20 s per process
ATLAS = {"runs": ["a"], "layers": ["layer2"], "images": 40, "grid": 3, "min_count": 2, "n_neighbors": 5,
         "layout": "joint", "adam_steps": 2, "pool_size": 4, "batch_size": 16}
LAYER = "layer2"  # 8 channels at width 1/16


@pytest.fixture(scope="module")
def study(tmp_path_factory, one_thread):
    """Two runs (a, b) of two random-init checkpoints each, 16 px shapes, every stage's settings small."""
    root = tmp_path_factory.mktemp("api")
    runs = []
    for r, name in enumerate(("a", "b")):
        for epoch in range(2):
            torch.manual_seed(100 * r + epoch)
            save_state(root / name / checkpoint_name(epoch), build_model(**ARCH).state_dict())
        runs.append({"name": name, "path": str(root / name), "seed": r})
    data = {"name": "api", "store": str(root / "store"), "device": "cpu", "layers": [LAYER],
            "defaults": dict(ARCH, data={"name": "shapes", "image_size": 16}), "runs": runs,
            "synth": SYNTH, "rsa": {"images": 24, "batch_size": 10}, "align": dict(ALIGN, track=[]), "atlas": ATLAS}
    path = root / "study.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return load_study(path)


def checkpoints(study, run: str) -> list[nn.Module]:
    """The run's checkpoints as models in memory, epoch by epoch."""
    return [load_into(build_model(**ARCH), path) for path in epoch_files(study.run_dir(study.run(run))).values()]


def test_prototypes_and_receptive_fields_equal_what_evolve_stores(study):
    from protoscope.store.arrays import ArrayStore

    stages.evolve(study, runs=["a"])
    store = ArrayStore(study.store / "arrays.zarr")
    models = checkpoints(study, "a")
    before = [(p.requires_grad, p.is_contiguous()) for p in models[0].parameters()]
    models[0].train()
    from protoscope.analyze.activations import stimulus_set

    natural = stimulus_set(study).images[: study.synth.natural_starts]  # what evolve starts from too
    results = ps.prototypes(models, LAYER, image_size=16, seed=study.synth.seed, config=study.synth.engine_config(),
                            natural=natural)
    fields = ps.receptive_field(models, LAYER, 16, per_unit=True, samples=SYNTH["rf_samples"], seed=study.synth.seed)
    for epoch, (result, rf) in enumerate(zip(results, fields)):
        stored, stored_rf = store.read_job("a", LAYER, epoch, 0), store.read_rf("a", LAYER, epoch)
        assert np.array_equal(result.images.numpy(), stored["prototype"])
        for name in ("score", "latent", "silent"):
            assert np.array_equal(getattr(result, name).numpy(), stored[name]), name
        assert np.array_equal(rf.map.numpy(), stored_rf["rf_map"])
        assert np.array_equal(rf.mask.numpy(), stored_rf["rf_mask"])
        assert np.array_equal(rf.unit_masks.numpy(), stored_rf["rf_mask_unit"])
    assert not np.array_equal(results[0].images.numpy(), results[1].images.numpy())  # two checkpoints, two answers
    # the caller's model is left as it was: train mode, weight gradients, memory layout
    assert models[0].training and all(m.training for m in models[0].modules())
    assert [(p.requires_grad, p.is_contiguous()) for p in models[0].parameters()] == before

    two = ps.prototypes(models[1], LAYER, units=torch.tensor([5, 2]), image_size=16, seed=study.synth.seed,
                        pool_size=16, cma_generations=1, adam_steps=3, batch_size=32)
    from protoscope.data.datasets import normalize
    from protoscope.nets.layers import activations

    from protoscope.synth.position import unit_position

    acts = activations(models[1].eval(), LAYER, normalize(two.images.permute(0, 3, 1, 2)))  # rescored as uint8
    cell = unit_position(models[1], LAYER, 16)
    centre = acts[:, :, cell.y, cell.x]
    assert torch.allclose(centre[[0, 1], [5, 2]], two.score, rtol=0.05)  # row i is unit units[i], at its cell
    assert ps.show(results).size == ((8 * 18 + 2) * 4, (2 * 18 + 2) * 4)  # a row per checkpoint, 16 px tiles x 4


def test_rdms_equal_what_rsa_stores(study):
    from protoscope.analyze.activations import stimulus_set
    from protoscope.store.rdms import load_rdms

    stages.rsa(study, runs=["a"])
    stored = load_rdms(study, runs=["a"], layers=[LAYER])
    stimuli = stimulus_set(study)
    mine = ps.rdms(checkpoints(study, "a"), LAYER, stimuli.images, stimuli.labels, categories=stimuli.categories, run="a",
                   batch_size=10)
    assert np.array_equal(mine.dissimilarities, stored.dissimilarities)
    for key in ("run", "layer", "epoch"):
        assert list(mine.rdm_descriptors[key]) == list(stored.rdm_descriptors[key]), key
    assert list(mine.pattern_descriptors["category"]) == list(stored.pattern_descriptors["category"])
    by_name = ps.rdms({3: checkpoints(study, "a")[1]}, LAYER, stimuli.images,
                      [stimuli.categories[k] for k in stimuli.labels], batch_size=10)
    assert np.allclose(by_name.dissimilarities, stored.subset("epoch", 1).dissimilarities)
    assert list(by_name.rdm_descriptors["epoch"]) == [3]


def test_align_equals_what_the_align_stage_stores(study):
    from protoscope.analyze.activations import stimulus_set
    from protoscope.store.alignment import align_root, read_result

    stages.align(study)
    pair = read_result(align_root(study) / "epoch_001" / "a~b" / f"{LAYER}.nc")
    summary = read_result(align_root(study) / "epoch_001" / "summary.nc")
    fit = ps.align(checkpoints(study, "a")[1], checkpoints(study, "b")[1], LAYER, stimulus_set(study).images, seed=1,
                   **ALIGN)
    assert np.array_equal(fit.correlation.between_, pair["between"].values)
    assert np.array_equal(fit.bipartite.partner_, pair["partner_bipartite"].values)
    assert np.array_equal(fit.mutual_info.mi_, pair["mi"].values)
    assert np.array_equal(fit.sparse.coef_, pair["coef"].values)
    assert np.array_equal(fit.spectral.labels_, pair["spectral_labels"].values)
    blocks = json.loads(summary.attrs["blocks"])
    i, j = blocks.index(f"a/{LAYER}"), blocks.index(f"b/{LAYER}")
    assert fit.cka.matrix_[0, 1] == pytest.approx(summary["cka"].values[i, j], rel=1e-9)


def test_atlas_equals_what_the_atlas_stage_stores(study):
    import zarr

    from protoscope.data.datasets import labelled

    stages.atlas(study, runs=["a"])
    group = zarr.open_group(study.store / "atlas.zarr" / "runs" / "a" / LAYER, mode="r")
    images = labelled(study.run("a").data, "probe", ATLAS["images"])
    settings = {k: v for k, v in ATLAS.items() if k not in ("runs", "layers", "images")}
    maps = ps.atlas(checkpoints(study, "a"), LAYER, images.images, images.labels, **settings)
    for epoch, atlas in enumerate(maps):
        for name in ("layout", "count", "direction", "icon", "score"):
            assert np.array_equal(getattr(atlas, name), group[name][epoch], equal_nan=name != "icon"), name
    assert maps[0].filled.any() and (maps[0].count.sum() == ATLAS["images"])


def test_show_draws_a_grid_and_saves_only_when_asked(tmp_path):
    images = torch.randint(0, 256, (5, 8, 8, 3), dtype=torch.uint8)
    picture = ps.show(images)
    assert picture.size == ((3 * 10 + 2) * 8, (2 * 10 + 2) * 8)  # 3 x 2 tiles of 8 px + 2 px gaps, enlarged 8x
    assert not list(tmp_path.iterdir())
    ps.show(images.permute(0, 3, 1, 2).float() / 255, tmp_path / "out" / "grid.png", scale=1)
    from PIL import Image

    saved = Image.open(tmp_path / "out" / "grid.png")
    assert saved.format == "PNG" and saved.size == (3 * 10 + 2, 2 * 10 + 2)
    assert np.asarray(saved)[2:10, 2:10].tolist() == images[0].tolist()  # the first tile, exactly
    assert ps.show(torch.rand(16, 16)).size == (64, 64)  # one map (no gaps), grey, enlarged to 64 px


# --------------------------------------------------------------------------- errors


def _calls(model, images):
    return {
        "prototypes": lambda layer, **kw: ps.prototypes(model, layer, image_size=16, **kw),
        "receptive_field": lambda layer, **kw: ps.receptive_field(model, layer, 16, **kw),
        "atlas": lambda layer, **kw: ps.atlas(model, layer, images, **kw),
        "rdms": lambda layer, **kw: ps.rdms(model, layer, images, **kw),
        "align": lambda layer, **kw: ps.align(model, model, layer, images, **kw),
    }


FUNCTIONS = ["prototypes", "receptive_field", "atlas", "rdms", "align"]


@pytest.mark.parametrize("name", FUNCTIONS)
def test_a_wrong_layer_lists_the_valid_ones(name):
    call = _calls(build_model(**ARCH), torch.zeros(20, 3, 16, 16, dtype=torch.uint8))[name]
    with pytest.raises(UserError, match=r"Unknown layer 'layer9'.*Valid choices: conv1, bn1, relu.*layer4"):
        call("layer9")


@pytest.mark.parametrize("name", FUNCTIONS)
def test_a_model_elsewhere_than_asked_is_refused_not_moved(name):
    model = build_model(**ARCH).to("meta")
    call = _calls(model, torch.zeros(20, 3, 16, 16, dtype=torch.uint8))[name]
    with pytest.raises(UserError, match=r"The model is on meta, but device='cpu' was asked for.*model.to\('cpu'\)"):
        call(LAYER, device="cpu")
    assert next(model.parameters()).device.type == "meta"
    model.fc = nn.Linear(2, 2)  # its classifier on the CPU, the rest on meta
    with pytest.raises(UserError, match=r"several devices \(cpu, meta\)"):
        call(LAYER)


@pytest.mark.parametrize("name", FUNCTIONS)
def test_an_image_size_the_model_cannot_take(name):
    model = nn.Sequential(nn.Conv2d(3, 4, 5), nn.ReLU(), nn.Conv2d(4, 4, 5), nn.ReLU())
    images = torch.zeros(20, 3, 6, 6, dtype=torch.uint8)
    calls = _calls(model, images)
    calls["prototypes"] = lambda layer: ps.prototypes(model, layer, image_size=6)
    calls["receptive_field"] = lambda layer: ps.receptive_field(model, layer, 6)
    with pytest.raises(UserError, match=r"Sequential cannot take 6x6 images up to layer '3'"):
        calls[name]("3")


def test_mistakes_in_options_images_and_the_stage_names(study):
    model = build_model(**ARCH)
    with pytest.raises(UserError, match=r"no option 'adam_step'.*Did you mean 'adam_steps'"):
        ps.prototypes(model, LAYER, image_size=16, adam_step=3)
    with pytest.raises(UserError, match=r"no option 'layers'"):  # a study's field, said by the arguments here
        ps.atlas(model, LAYER, torch.zeros(20, 3, 16, 16), layers=["layer1"])
    with pytest.raises(UserError, match=r"grid: Input should be greater than or equal to 2"):
        ps.atlas(model, LAYER, torch.zeros(20, 3, 16, 16), grid=1)
    with pytest.raises(UserError, match=r"units must be channel indices of 'layer2' \(0 \.\. 7\)"):
        ps.prototypes(model, LAYER, units=[8], image_size=16)
    with pytest.raises(UserError, match=r"leave Normalize out"):
        ps.rdms(model, LAYER, torch.randn(8, 3, 16, 16))
    with pytest.raises(UserError, match=r"a study's `align` stage is protoscope.stages.align\(study\)"):
        ps.align(study, study, LAYER, torch.zeros(8, 3, 16, 16))
    with pytest.raises(UserError, match=r"protoscope.stages.evolve\(study\)"):
        ps.prototypes(study, LAYER)
    with pytest.raises(UserError, match=r"Layer 'fc' gives 2-D activations"):
        ps.prototypes(build_model(**ARCH, num_classes=3), "fc", image_size=16)
