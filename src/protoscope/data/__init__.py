"""Data: the built-in procedural shapes, local torchvision data sets, labelled and stimulus sets."""

from .datasets import Labelled, TrainImages, labelled, normalize, open_torchvision
from .shapes import CLASSES, ShapeStream, labelled_set, render

__all__ = ["CLASSES", "Labelled", "ShapeStream", "TrainImages", "labelled", "labelled_set", "normalize", "open_torchvision", "render"]
