"""Training batches as a pure function of ``(seed, step)``: the same step always gets the same images
and crop keys, so a run resumed at step N sees the batches an uninterrupted run would have."""
from __future__ import annotations

import numpy as np
from torch.utils.data import Sampler


class StepBatchSampler(Sampler):
    """Yields, for steps ``start..steps-1``, a batch of ``(image_index, crop_seed)`` keys."""

    def __init__(self, n_images: int, batch_size: int, seed: int, start: int, steps: int):
        self.n, self.batch, self.seed, self.start, self.steps = n_images, batch_size, seed, start, steps

    def __iter__(self):
        for step in range(self.start, self.steps):
            rng = np.random.default_rng([self.seed, step])
            idx = rng.integers(0, self.n, self.batch)
            yield [(int(i), (self.seed, step, k)) for k, i in enumerate(idx)]

    def __len__(self):
        return max(0, self.steps - self.start)
