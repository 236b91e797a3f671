"""EAT's input pipeline: squash the whole photo to 224x224 with Pillow, then ImageNet-normalise.

The two official variants differ only in the resampling filter, and the difference is visible
in the scores, so each model keeps its own: the AVA dataset class calls ``Image.resize((224,
224))`` with Pillow's default (bicubic for RGB), the TAD66K one goes through torchvision's
``Resize((224, 224))``, which for a PIL image is Pillow's bilinear. Both are Pillow's own
area-aware convolution resamplers; no other library reproduces them to the tolerance, so this
module calls Pillow the same way. No aspect-ratio preservation and no crop, as in the paper's
code.

EXIF orientation and alpha are the decoder's business (``charmcli.library.decode``): with
``--exact`` it hands over ``Image.open(f).convert("RGB")``, which is what the official loader does.
"""

from __future__ import annotations

import numpy as np
import torch
from PIL import Image

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

FILTERS = {"bicubic": Image.Resampling.BICUBIC, "bilinear": Image.Resampling.BILINEAR}


class EatPreprocess:
    """RGB PIL image -> (3, S, S) float32 tensor, the official eval transform of one variant.

    Thread-safe (no state after construction). Equal instances prepare equal tensors, so a
    multi-model run prepares once per distinct :attr:`key`.
    """

    def __init__(self, resample: str = "bicubic", size: int = 224) -> None:
        if resample not in FILTERS:
            raise ValueError(f"resample must be one of {', '.join(FILTERS)}")
        self.resample, self.size = resample, size
        self._mean = torch.tensor(IMAGENET_MEAN, dtype=torch.float32).reshape(3, 1, 1)
        self._std = torch.tensor(IMAGENET_STD, dtype=torch.float32).reshape(3, 1, 1)

    @property
    def key(self) -> tuple[str, str, int]:
        return ("eat", self.resample, self.size)

    def __call__(self, image: Image.Image) -> torch.Tensor:
        if image.mode != "RGB":
            image = image.convert("RGB")
        if image.size != (self.size, self.size):
            image = image.resize((self.size, self.size), FILTERS[self.resample])
        pixels = torch.from_numpy(np.array(image, dtype=np.uint8)).permute(2, 0, 1)
        # ToTensor then Normalize, in the same float32 steps: /255, then (x - mean) / std
        return pixels.float().div(255).sub(self._mean).div(self._std)
