"""DataModules that read prepared splits from the store, never from a generator.

A prepared dataset is a directory with `train.npz`, `val.npz`, `test.npz` and `card.json`. Each
split holds arrays `x` and `y`, and `x_len`/`y_len` where lengths vary. Batches follow the
contract of `seqmodels.batch`. Reading only from the store means a trial works on any node that
can reach it.
"""

from __future__ import annotations

from pathlib import Path

import lightning as L
import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from seqmodels.batch import Batch

SPLITS = ("train", "val", "test")


class SplitDataset(Dataset):
    """One split's arrays as a map-style dataset of dict items (see `seqmodels.batch`)."""

    def __init__(self, arrays: dict[str, np.ndarray]) -> None:
        self.tensors = {key: torch.from_numpy(value) for key, value in arrays.items()}
        x = self.tensors["x"]
        if "x_len" not in self.tensors:  # fixed length: every sequence fills all T steps
            self.tensors["x_len"] = torch.full((x.shape[0],), x.shape[1], dtype=torch.int64)

    def __len__(self) -> int:
        return self.tensors["x"].shape[0]

    def __getitem__(self, index: int) -> Batch:
        return {key: value[index] for key, value in self.tensors.items()}


def load_split(root: str | Path, split: str) -> SplitDataset:
    """Load one split from a prepared dataset directory."""
    with np.load(Path(root) / f"{split}.npz") as arrays:
        return SplitDataset({key: arrays[key] for key in arrays.files})


class NpzDataModule(L.LightningDataModule):
    """Train/val/test loaders over a prepared dataset directory."""

    def __init__(self, root: str | Path, batch_size: int = 64, seed: int = 0) -> None:
        super().__init__()
        self.root = Path(root)
        self.batch_size = batch_size
        self.seed = seed
        self.datasets: dict[str, SplitDataset] = {}

    def setup(self, stage: str | None = None) -> None:
        for split in SPLITS:
            if split not in self.datasets:
                self.datasets[split] = load_split(self.root, split)

    def train_dataloader(self) -> DataLoader:
        # A seeded generator keeps the shuffle order reproducible for a given trial seed.
        generator = torch.Generator().manual_seed(self.seed)
        return DataLoader(
            self.datasets["train"], batch_size=self.batch_size, shuffle=True, generator=generator
        )

    def val_dataloader(self) -> DataLoader:
        return DataLoader(self.datasets["val"], batch_size=1024)

    def test_dataloader(self) -> DataLoader:
        return DataLoader(self.datasets["test"], batch_size=1024)
