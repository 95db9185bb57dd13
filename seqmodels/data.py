"""DataModules that read prepared splits from the store, never from a generator.

A prepared dataset is a directory with `train.npz`, `val.npz`, `test.npz` and `card.json`, on a
local disk or behind any fsspec URL (`s3://...`, `gs://...`). Each
split holds arrays `x` and `y`, and `x_len`/`y_len` where lengths vary (`x_parent` for trees).
Batches follow the contract of `seqmodels.batch`. Reading only from the store means a trial works
on any node that can reach it.

Variable-length splits are stored padded to the split's longest example. A batch is cut back to
its own longest example (`collate`), and training batches group similar lengths
(`BucketBatchSampler`) so that little of each batch is padding.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import lightning as L
import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, Sampler

from seqmodels.batch import HOST_KEYS, Batch
from seqmodels.files import SPLITS, read_arrays

EVAL_BATCH = 1024
X_KEYS = ("x", "x_parent")  # arrays padded along time to the input length


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

    def __getitems__(self, indices: list[int]) -> Batch:
        """A whole batch, one gather per array: what a DataLoader asks for when the dataset
        has it, instead of an item per index: on the training loop's own thread that is a few
        times faster than gathering the items and stacking them (benchmarks/README.md)."""
        index = torch.as_tensor(indices, dtype=torch.int64)
        return {key: value[index] for key, value in self.tensors.items()}

    @property
    def variable_length(self) -> bool:
        """True when some input is shorter than the padded width."""
        x_len = self.tensors["x_len"]
        return bool(x_len.numel()) and int(x_len.min()) < self.tensors["x"].shape[1]


def collate(items: list[Batch] | Batch) -> Batch:
    """Stack items (or take a batch `SplitDataset.__getitems__` gathered), then cut padded time
    axes to the batch's longest input and target."""
    if isinstance(items, dict):
        batch = dict(items)
    else:
        batch = {key: torch.stack([item[key] for item in items]) for key in items[0]}
    width = int(batch["x_len"].max())
    for key in X_KEYS:
        if key in batch:
            batch[key] = batch[key][:, :width]  # (B, T_batch, ...)
    if "y_len" in batch:  # sequence targets: (B, U) -> (B, U_batch)
        batch["y"] = batch["y"][:, : int(batch["y_len"].max())]
    return batch


class BucketBatchSampler(Sampler[list[int]]):
    """Shuffled batches of similar input length, reproducible under `seed`.

    Each epoch shuffles all indices, cuts them into pools of `pool_batches` batches, sorts each
    pool by length and cuts it into batches, then shuffles the order of the batches. Sorting only
    within a pool keeps batches random across the data while their padding stays small.
    """

    def __init__(
        self, lengths: torch.Tensor, batch_size: int, seed: int, pool_batches: int = 50
    ) -> None:
        if batch_size < 1:
            raise ValueError("batch_size must be >= 1")
        if pool_batches < 1:
            raise ValueError("pool_batches must be >= 1")
        self.lengths = lengths
        self.batch_size = batch_size
        self.pool = batch_size * pool_batches
        self.generator = torch.Generator().manual_seed(seed)  # advances epoch to epoch

    def __len__(self) -> int:
        return -(-len(self.lengths) // self.batch_size) if len(self.lengths) else 0

    def __iter__(self) -> Iterator[list[int]]:
        order = torch.randperm(len(self.lengths), generator=self.generator)
        batches: list[torch.Tensor] = []
        for start in range(0, len(order), self.pool):
            pool = order[start : start + self.pool]
            pool = pool[torch.argsort(self.lengths[pool], stable=True)]
            batches.extend(pool.split(self.batch_size))
        for i in torch.randperm(len(batches), generator=self.generator).tolist():
            yield batches[i].tolist()


def load_split(root: str | Path, split: str) -> SplitDataset:
    """Load one split from a prepared dataset directory."""
    return SplitDataset(read_arrays(root, split))


class NpzDataModule(L.LightningDataModule):
    """Train/val/test loaders over a prepared dataset directory.

    Args:
        root: the prepared dataset's directory: a local path or an fsspec URL.
        batch_size: training batch size.
        seed: fixes the shuffle (and bucketing) order of training batches.
        bucket: group similar lengths into training batches when the split's lengths vary;
            fixed-length splits always shuffle plainly.
        pin_memory: put each batch in page-locked memory, so that its copy to a GPU does not
            wait for the GPU's queued work; None (the default) pins when the attached
            Trainer trains on a CUDA device.
    """

    def __init__(
        self,
        root: str | Path,
        batch_size: int = 64,
        seed: int = 0,
        bucket: bool = True,
        pin_memory: bool | None = None,
    ) -> None:
        super().__init__()
        self.root = str(root)
        self.batch_size = batch_size
        self.seed = seed
        self.bucket = bucket
        self.pin_memory = pin_memory
        self.datasets: dict[str, SplitDataset] = {}

    def transfer_batch_to_device(
        self, batch: Batch, device: torch.device, dataloader_idx: int
    ) -> Batch:
        """Lightning's move to the device, except `HOST_KEYS`, which stay on the CPU.

        Torch's packing reads the lengths on the CPU and the recursive network builds its trees
        in Python: had they moved to the GPU, each read back would wait for all its queued work
        (`benchmarks/gpu_steps.py` counts such waits a step, for padded bidirectional batches
        and for trees).
        """
        host = {key: batch[key] for key in HOST_KEYS if key in batch}
        rest = {key: value for key, value in batch.items() if key not in host}
        return {**super().transfer_batch_to_device(rest, device, dataloader_idx), **host}

    @property
    def pinned(self) -> bool:
        """Whether the loaders pin their batches (see `pin_memory`)."""
        if self.pin_memory is not None:
            return self.pin_memory
        trainer = self.trainer
        return trainer is not None and trainer.strategy.root_device.type == "cuda"

    def setup(self, stage: str | None = None) -> None:
        for split in SPLITS:
            if split not in self.datasets:
                self.datasets[split] = load_split(self.root, split)

    def train_dataloader(self) -> DataLoader:
        train = self.datasets["train"]
        if self.bucket and train.variable_length:
            sampler = BucketBatchSampler(train.tensors["x_len"], self.batch_size, self.seed)
            return DataLoader(
                train, batch_sampler=sampler, collate_fn=collate, pin_memory=self.pinned
            )
        # A seeded generator keeps the shuffle order reproducible for a given trial seed.
        generator = torch.Generator().manual_seed(self.seed)
        return DataLoader(
            train,
            batch_size=self.batch_size,
            shuffle=True,
            generator=generator,
            collate_fn=collate,
            pin_memory=self.pinned,
        )

    def val_dataloader(self) -> DataLoader:
        return self._evaluation_loader("val")

    def test_dataloader(self) -> DataLoader:
        return self._evaluation_loader("test")

    def _evaluation_loader(self, split: str) -> DataLoader:
        return DataLoader(
            self.datasets[split], batch_size=EVAL_BATCH, collate_fn=collate, pin_memory=self.pinned
        )
