"""Where images come from: one module per format (folder trees, tar archives, WebDataset shards
read in place or streamed, MNIST, CIFAR, scikit-learn's digits, torchvision's sets), the one
dataset type with its item protocol (`ImageDataset`, `Skipped`, `collate_skip`), the splits
helpers, and `discover`, the one way every command opens data."""

from .cifar import cifar_batches
from .dataset import ArrayReader, FileReader, ImageDataset, Skipped, collate_skip
from .digits import digits
from .discover import Source, discover
from .folder import image_folder
from .mnist import mnist_idx, read_idx
from .splits import check_splits, spread, stratified_split
from .stream import ShardStream
from .tar import scan_tar_headers, tar_images
from .torchvision_sets import torchvision_dataset

__all__ = [
    "ArrayReader",
    "FileReader",
    "ImageDataset",
    "ShardStream",
    "Skipped",
    "Source",
    "check_splits",
    "cifar_batches",
    "collate_skip",
    "digits",
    "discover",
    "image_folder",
    "mnist_idx",
    "read_idx",
    "scan_tar_headers",
    "spread",
    "stratified_split",
    "tar_images",
    "torchvision_dataset",
]
