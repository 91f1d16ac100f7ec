"""Data sets and augmentation: every source is an `ImageDataset` of (image, label), one module
per source format; bad images are skipped and reported through `collate_skip`."""

from .cifar import cifar_batches
from .dataset import (
    ArrayReader,
    FileReader,
    ImageDataset,
    check_splits,
    collate_skip,
    spread,
    stratified_split,
)
from .digits import digits
from .folder import image_folder
from .mnist import mnist_idx, read_idx
from .open import open_dataset
from .samples import folder_samples, image_folder_samples, imagenet_sample_samples
from .tar import scan_tar_headers, tar_images
from .torchvision_sets import torchvision_dataset
from .transforms import (
    GOOGLENET_INTERPOLATIONS,
    RECIPES,
    WHOLE_IMAGE_RECIPES,
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

__all__ = [
    "GOOGLENET_INTERPOLATIONS",
    "RECIPES",
    "WHOLE_IMAGE_RECIPES",
    "AffineDistort",
    "ArrayReader",
    "FileReader",
    "ImageDataset",
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
    "folder_samples",
    "image_folder",
    "image_folder_samples",
    "imagenet_sample_samples",
    "mnist_idx",
    "open_dataset",
    "read_idx",
    "scan_tar_headers",
    "spread",
    "stratified_split",
    "tar_images",
    "torchvision_dataset",
    "train_transform",
]
