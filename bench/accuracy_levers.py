"""The levers bench/accuracy.py tries that the package does not (yet) have as settings.

* :func:`dihedral_average`: average of a (z, y, x) prediction over the 8 rotations / flips of the
  y-x plane.  Each term is ``g^-1(predict(g(volume)))`` with the project's exact overlap-tile
  prediction (:func:`unet.inference.predict_array`), so the average is as exact under tiling as
  one prediction is.
* :class:`GrownBoxDataset`: the training patch is read from a box grown enough that rotation and
  elastic deformation only ever sample real data (mirroring only at the volume's own border),
  then centre-cropped to the net's input.
* :func:`add_second_dropout`: the released Caffe model's dropout after the 512-channel stage (the
  second-deepest level), on top of the one after the 1024-channel stage.
* :func:`with_cldice`: the paper's weighted cross-entropy plus ``weight`` x soft-clDice (Shit et
  al. 2021, CVPR, "clDice - a novel topology-preserving loss function for tubular structure
  segmentation"; MONAI's ``soft_skel``) on the membrane class (0): a topology term aimed at the
  split and merger pixels the warping error counts.
* :class:`WeightAverage`: an exponential moving average of the weights over the last steps
  (time constant a fraction of the run), the net that is scored.
* :func:`monai_row`: MONAI's ``BasicUNet`` (same-padded), Dice + cross-entropy, MONAI's random
  flips and rotations, Adam: what a new user would write with MONAI.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from unet.geometry import Box, Window, center_crop, read_mirrored
from unet.io.normalize import to_unit
from unet.training.augment import augment
from unet.training.loss import weighted_cross_entropy
from unet.training.sampler import PatchDataset, Sample
from unet.weights.border import separate

DIHEDRAL = tuple((k, flip) for flip in (False, True) for k in range(4))
"""The 8 symmetries of the square: rotate by k * 90 degrees, after an optional x flip."""


def dihedral(array: np.ndarray, k: int, flip: bool) -> np.ndarray:
    """Apply one symmetry to the last two axes."""
    out = array[..., ::-1] if flip else array
    return np.rot90(out, k, axes=(-2, -1))


def undo_dihedral(array: np.ndarray, k: int, flip: bool) -> np.ndarray:
    """The inverse of :func:`dihedral`."""
    out = np.rot90(array, -k, axes=(-2, -1))
    return out[..., ::-1] if flip else out


def dihedral_average(
    predict: Callable[[np.ndarray], np.ndarray], volume: np.ndarray, n: int = 8
) -> np.ndarray:
    """Mean of ``undo(predict(do(volume)))`` over the first ``n`` of :data:`DIHEDRAL`."""
    total = np.zeros(volume.shape, np.float64)
    for k, flip in DIHEDRAL[:n]:
        moved = np.ascontiguousarray(dihedral(volume, k, flip))
        total += undo_dihedral(predict(moved), k, flip)
    return (total / n).astype(np.float32)


def grown_margin(input_shape: Sequence[int], rotation: float, elastic_sigma: float) -> int:
    """Pixels to grow a (y, x) input box by so that its rotation by up to ``rotation`` degrees
    plus an elastic displacement of 4 sigma stays inside it."""
    half = max(input_shape) / 2.0
    angle = math.radians(min(rotation, 45.0))
    reach = half * (math.cos(angle) + math.sin(angle))  # corner of the rotated box
    return int(math.ceil(reach - half + 4.0 * elastic_sigma))


class GrownBoxDataset(PatchDataset):
    """:class:`unet.sampler.PatchDataset` that augments a grown box, then crops the input box."""

    def __getitem__(self, index: int) -> Sample:
        z0, box, rng = self.box(index)
        cfg = self.augment_config
        g = 0 if cfg is None else grown_margin(self.input_shape, cfg.rotation, cfg.elastic_sigma)
        grown = box.grow((0, g, g))
        raw, labels, weights = (
            read_mirrored(Window(a, Box((z0, 0, 0), (1, *a.shape[1:]))), grown)[0]
            for a in self.arrays
        )
        image = to_unit(raw)
        classes = (separate(labels, self.separation) > 0).astype(np.uint8)
        weights = weights.astype(np.float32, copy=False)
        if cfg is not None:
            image, classes, weights = augment(image, classes, weights, rng, cfg)
        image, classes, weights = (
            center_crop(a, self.input_shape) for a in (image, classes, weights)
        )
        return (
            torch.from_numpy(np.ascontiguousarray(image))[None],
            torch.from_numpy(classes.astype(np.int64)),
            torch.from_numpy(np.ascontiguousarray(weights)),
        )


def add_second_dropout(model: torch.nn.Module, p: float) -> Any:
    """Dropout on the output of the second-deepest encoder stage (512 channels in the paper's
    net) while training; returns the hook handle."""

    def hook(module: torch.nn.Module, inputs: Any, output: torch.Tensor) -> torch.Tensor:
        return F.dropout(output, p, module.training)

    return model.downs[-2].register_forward_hook(hook)


def with_cldice(weight: float, iterations: int) -> Callable[..., torch.Tensor]:
    """Loss ``(logits, classes, weights) -> weighted CE + weight * soft-clDice(membrane)``.

    soft-clDice = 1 - 2 Tprec Tsens / (Tprec + Tsens), Tprec = |S(P) * Y| / |S(P)| and
    Tsens = |S(Y) * P| / |S(Y)| (+1 smoothing), P the predicted membrane probability, Y the
    true membrane mask, S MONAI's soft skeleton after ``iterations`` erosions.
    """
    from monai.losses.cldice import soft_skel

    def loss(logits: torch.Tensor, classes: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
        base = weighted_cross_entropy(logits, classes, weights)
        target = center_crop(classes, tuple(logits.shape[2:]))
        p = torch.softmax(logits, 1)[:, :1]
        y = (target == 0).to(p.dtype)[:, None]
        skel_p, skel_y = soft_skel(p, iterations), soft_skel(y, iterations)
        t_prec = ((skel_p * y).sum() + 1.0) / (skel_p.sum() + 1.0)
        t_sens = ((skel_y * p).sum() + 1.0) / (skel_y.sum() + 1.0)
        return base + weight * (1.0 - 2.0 * t_prec * t_sens / (t_prec + t_sens))

    return loss


class WeightAverage:
    """Exponential moving average of ``model``'s parameters and buffers, time constant ``tau``
    steps (decay ``1 - 1 / tau``); :meth:`copy_to` puts the average into the model."""

    def __init__(self, model: torch.nn.Module, tau: float) -> None:
        self.decay = 1.0 - 1.0 / tau
        self.average = {k: v.detach().clone() for k, v in model.state_dict().items()}

    @torch.no_grad()
    def update(self, model: torch.nn.Module) -> None:
        for k, v in model.state_dict().items():
            if v.is_floating_point():
                self.average[k].lerp_(v, 1.0 - self.decay)
            else:
                self.average[k].copy_(v)

    def copy_to(self, model: torch.nn.Module) -> None:
        model.load_state_dict(self.average)


def batch_norm_train_mode(model: torch.nn.Module) -> None:
    """Normalise with each tile's own batch statistics at inference (as training did at batch
    1), not the running averages."""
    for m in model.modules():
        if isinstance(m, torch.nn.modules.batchnorm._BatchNorm):
            m.running_mean, m.running_var = None, None  # batch statistics, in eval mode too


def monai_net(features: Sequence[int] | None = None) -> torch.nn.Module:
    from monai.networks.nets import BasicUNet

    kwargs = {} if features is None else {"features": tuple(features)}
    return BasicUNet(spatial_dims=2, in_channels=1, out_channels=2, **kwargs)


class MonaiTrainer:
    """BasicUNet + DiceCELoss + Adam on random (patch, patch) crops of the training slices with
    MONAI's RandFlip / RandRotate90 / RandRotate (reflect padding)."""

    def __init__(
        self,
        raw: np.ndarray,
        cells: np.ndarray,
        slices: Sequence[int],
        patch: int,
        seed: int,
        lr: float = 1e-3,
        features: Sequence[int] | None = None,
    ) -> None:
        from monai import transforms as T
        from monai.losses import DiceCELoss

        torch.manual_seed(seed)
        self.raw, self.cells, self.slices, self.patch = raw, cells, list(slices), patch
        self.rng = np.random.default_rng(seed)
        self.model = monai_net(features)
        self.loss = DiceCELoss(to_onehot_y=True, softmax=True)
        self.optimizer = torch.optim.Adam(self.model.parameters(), lr=lr)
        keys = ["image", "label"]
        self.transform = T.Compose(
            [
                T.RandFlipd(keys, prob=0.5, spatial_axis=0),
                T.RandFlipd(keys, prob=0.5, spatial_axis=1),
                T.RandRotate90d(keys, prob=0.5),
                T.RandRotated(
                    keys,
                    range_x=math.pi,
                    prob=0.5,
                    mode=("bilinear", "nearest"),
                    padding_mode="reflection",
                ),
            ]
        )
        self.transform.set_random_state(seed=seed)

    def batch(self) -> tuple[torch.Tensor, torch.Tensor]:
        z = self.slices[int(self.rng.integers(len(self.slices)))]
        y, x = (int(self.rng.integers(s - self.patch + 1)) for s in self.raw.shape[1:])
        cut = (z, slice(y, y + self.patch), slice(x, x + self.patch))
        image = to_unit(self.raw[cut])[None].astype(np.float32)
        label = self.cells[cut][None].astype(np.float32)
        out = self.transform({"image": image, "label": label})
        return torch.as_tensor(out["image"])[None].float(), torch.as_tensor(out["label"])[None]

    def step(self) -> float:
        self.model.train()
        image, label = self.batch()
        loss = self.loss(self.model(image), label.round().long())
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()
        return float(loss.detach())

    @torch.inference_mode()
    def predict(self, volume: np.ndarray) -> np.ndarray:
        """Cell probability of whole (z, y, x) slices (sides multiples of 16)."""
        self.model.eval()
        out = []
        for s in volume:
            logits = self.model(torch.from_numpy(to_unit(s).astype(np.float32))[None, None])
            out.append(torch.softmax(logits, 1)[0, 1].numpy())
        return np.stack(out)


def seconds_per_step(step: Callable[[], Any], n: int, warmup: int = 2) -> float:
    """Mean seconds of ``n`` calls of ``step`` after ``warmup`` calls."""
    for _ in range(warmup):
        step()
    t0 = time.perf_counter()
    for _ in range(n):
        step()
    return (time.perf_counter() - t0) / n
