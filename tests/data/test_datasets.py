import numpy as np
import pytest
import torch
from PIL import Image

from protoscope.data.datasets import TrainImages, labelled, normalize
from protoscope.errors import UserError
from protoscope.study import DataSpec


def _image_folder(root, split, per_class=3, size=20):
    for c, colour in enumerate([(255, 0, 0), (0, 255, 0), (0, 0, 255)]):
        folder = root / split / f"class{c}"
        folder.mkdir(parents=True)
        for i in range(per_class):
            Image.new("RGB", (size, size + i), colour).save(folder / f"{i}.png")


def test_image_folder_labelled_and_training_batches(tmp_path):
    _image_folder(tmp_path, "train", per_class=4)
    _image_folder(tmp_path, "test", per_class=2)
    spec = DataSpec(name="imagefolder", root=tmp_path, image_size=16)
    train = labelled(spec, "train")
    assert train.images.shape == (12, 3, 16, 16) and train.images.dtype == torch.uint8
    assert train.categories == ("class0", "class1", "class2")
    assert torch.equal(torch.bincount(train.labels), torch.tensor([4, 4, 4]))
    # class 1 is green: the label really is the folder's
    assert (train.images[train.labels == 1][:, 1] == 255).all() and (train.images[train.labels == 1][:, 0] == 0).all()
    assert len(labelled(spec, "test")) == 6
    sub = labelled(spec, "train", n=6)
    assert torch.equal(torch.bincount(sub.labels), torch.tensor([2, 2, 2]))  # class-balanced subsample

    source = TrainImages(spec, batch_size=4)
    assert source.steps_per_epoch == 3
    batch = source.images(epoch=1, step=0)
    assert len(batch) == 4 and isinstance(batch[0], Image.Image)
    again = source.images(epoch=1, step=0)
    assert [np.asarray(a).tolist() for a in batch] == [np.asarray(b).tolist() for b in again]


@pytest.mark.parametrize("name, expected", [("stl10", "stl10_binary"), ("cifar10", "cifar-10-batches-py")])
def test_missing_dataset_says_where_files_go(tmp_path, name, expected):
    spec = DataSpec(name=name, root=tmp_path / "nothing-here")
    with pytest.raises(UserError) as info:
        labelled(spec, "train")
    assert str(tmp_path / "nothing-here") in str(info.value) and expected in str(info.value)


def test_normalize_is_imagenet():
    white = torch.full((1, 3, 2, 2), 255, dtype=torch.uint8)
    out = normalize(white)[0, :, 0, 0]
    assert torch.allclose(out, (1 - torch.tensor([0.485, 0.456, 0.406])) / torch.tensor([0.229, 0.224, 0.225]))


def test_shapes_probe_split_differs_from_train_and_test():
    spec = DataSpec(name="shapes", image_size=16)
    a, b, c = (labelled(spec, s, 40).images for s in ("train", "test", "probe"))
    assert not torch.equal(a, b) and not torch.equal(a, c) and not torch.equal(b, c)
