from .bicubic import downscale, imresize
from .datasets import HRFolderDataset, PairedFolderDataset, benchmark_dataset

__all__ = ["HRFolderDataset", "PairedFolderDataset", "benchmark_dataset", "downscale", "imresize"]
