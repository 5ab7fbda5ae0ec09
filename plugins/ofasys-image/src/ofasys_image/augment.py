"""RandAugment through torchvision, seeded per sample."""

from __future__ import annotations

import functools

GEOMETRIC_OPS = ("ShearX", "ShearY", "TranslateX", "TranslateY", "Rotate")


@functools.lru_cache(maxsize=2)
def _augmenter(geometric: bool):
    import torchvision.transforms as T

    class _PhotometricRandAugment(T.RandAugment):
        """RandAugment without the ops that move pixels (boxes would no longer match the image)."""

        def _augmentation_space(self, num_bins, image_size):
            space = super()._augmentation_space(num_bins, image_size)
            return {k: v for k, v in space.items() if k not in GEOMETRIC_OPS}

    cls = T.RandAugment if geometric else _PhotometricRandAugment
    return cls(num_ops=2, magnitude=9)


def rand_augment(img, seed: int, geometric: bool = True):
    """torchvision ``RandAugment(num_ops=2, magnitude=9)`` on a PIL image; its random choices come from ``seed``
    (torch's global generator is forked, so training randomness elsewhere is untouched)."""
    import torch

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return _augmenter(geometric)(img)
