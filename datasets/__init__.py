"""Datasets: Cityscapes (+labels), contrast positives/negatives, paired LOL data, inference folders."""
from datasets.augment import INVERSE, NUM_MODES, augment, augment_inverse
from datasets.cityscapes import Cityscapes
from datasets.contrast import ContrastSet
from datasets.folder import ImageFolder
from datasets.lol import PairedDataset, find_pairs, is_paired_dir

__all__ = ["Cityscapes", "ContrastSet", "ImageFolder", "PairedDataset", "find_pairs", "is_paired_dir",
           "augment", "augment_inverse", "INVERSE", "NUM_MODES"]
