"""Readers for the paper's benchmarks, as distributed on disk, and their triplet protocols."""

from .base import DatasetSpec, Triplet, TripletSet, VideoSet
from .registry import dataset_spec, list_datasets, load_dataset

__all__ = ["DatasetSpec", "Triplet", "TripletSet", "VideoSet", "dataset_spec", "list_datasets", "load_dataset"]
