"""Data sets and augmentation: every source is an `ImageDataset` of (image, label), one module
per source format; bad images are skipped and reported through `collate_skip`. Augmentation
recipes are declared once in `recipes` and run by the backends of `pipelines`."""

from .cifar import cifar_batches
from .classes import ClassMap, imagenet_class_ids, imagenet_class_names
from .dataset import (
    ArrayReader,
    FileReader,
    ImageDataset,
    LoadedImages,
    check_splits,
    collate_skip,
    spread,
    stratified_split,
)
from .digits import digits
from .folder import image_folder
from .labels import read_labels, real_labels
from .mnist import mnist_idx, read_idx
from .open import open_dataset
from .pipelines.pillow import (
    AffineDistort,
    PCALighting,
    PhotometricDistort,
    RandomCrop,
    RandomHorizontalFlip,
    RandomSizedCrop,
    ScaleJitter,
    ToModelInput,
    eval_transform,
    train_transform,
)
from .recipes import GOOGLENET_INTERPOLATIONS, RECIPES, WHOLE_IMAGE_RECIPES
from .samples import Labelled, labelled_images
from .tar import scan_tar_headers, tar_images
from .torchvision_sets import torchvision_dataset

__all__ = [
    "GOOGLENET_INTERPOLATIONS",
    "RECIPES",
    "WHOLE_IMAGE_RECIPES",
    "AffineDistort",
    "ArrayReader",
    "ClassMap",
    "FileReader",
    "ImageDataset",
    "Labelled",
    "LoadedImages",
    "PCALighting",
    "PhotometricDistort",
    "RandomCrop",
    "RandomHorizontalFlip",
    "RandomSizedCrop",
    "ScaleJitter",
    "ToModelInput",
    "check_splits",
    "cifar_batches",
    "collate_skip",
    "digits",
    "eval_transform",
    "image_folder",
    "imagenet_class_ids",
    "imagenet_class_names",
    "labelled_images",
    "mnist_idx",
    "open_dataset",
    "read_idx",
    "read_labels",
    "real_labels",
    "scan_tar_headers",
    "spread",
    "stratified_split",
    "tar_images",
    "torchvision_dataset",
    "train_transform",
]
