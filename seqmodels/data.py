"""DataModules that read prepared splits from the store, never from a generator.

A prepared dataset is a directory with `train.npz`, `val.npz`, `test.npz` (arrays `x`, `y`) and
`card.json`. Reading only from there means a trial works on any node that can reach the store.
"""

from __future__ import annotations

from pathlib import Path

import lightning as L
import numpy as np
import torch
from torch.utils.data import DataLoader, TensorDataset

SPLITS = ("train", "val", "test")


def load_split(root: str | Path, split: str) -> TensorDataset:
    """Load one split as tensors: x (N, T, F), y (N, ...)."""
    with np.load(Path(root) / f"{split}.npz") as arrays:
        return TensorDataset(torch.from_numpy(arrays["x"]), torch.from_numpy(arrays["y"]))


class NpzDataModule(L.LightningDataModule):
    """Train/val/test loaders over a prepared dataset directory."""

    def __init__(self, root: str | Path, batch_size: int = 64, seed: int = 0) -> None:
        super().__init__()
        self.root = Path(root)
        self.batch_size = batch_size
        self.seed = seed
        self.datasets: dict[str, TensorDataset] = {}

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
