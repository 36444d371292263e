"""Weighted cross-entropy: value, cropping, gradients and shape errors."""

from __future__ import annotations

import pytest
import torch

from unet.training.loss import weighted_cross_entropy


def manual(logits: torch.Tensor, target: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """Eq. 1 written out: mean of w * -log(exp(a_l) / sum_k exp(a_k))."""
    probs = torch.exp(logits) / torch.exp(logits).sum(dim=1, keepdim=True)
    picked = torch.gather(probs, 1, target.unsqueeze(1)).squeeze(1)
    return (weights * -torch.log(picked)).mean()


@pytest.mark.parametrize("spatial", [(6, 7), (3, 4, 5)])
def test_matches_manual_computation(spatial):
    gen = torch.Generator().manual_seed(0)
    logits = torch.randn((2, 3, *spatial), generator=gen, dtype=torch.float64)
    target = torch.randint(0, 3, (2, *spatial), generator=gen)
    weights = torch.rand((2, *spatial), generator=gen, dtype=torch.float64) * 5 + 1
    loss = weighted_cross_entropy(logits, target, weights)
    assert loss.shape == ()
    torch.testing.assert_close(loss, manual(logits, target, weights))


def test_crops_target_and_weights_to_the_centre():
    gen = torch.Generator().manual_seed(1)
    logits = torch.randn((1, 2, 4, 6), generator=gen)
    target = torch.randint(0, 2, (1, 8, 10), generator=gen)
    weights = torch.rand((1, 8, 10), generator=gen)
    loss = weighted_cross_entropy(logits, target, weights)
    expected = manual(logits, target[:, 2:6, 2:8], weights[:, 2:6, 2:8])
    torch.testing.assert_close(loss, expected)
    # the cropped-away border does not matter
    weights[:, :2] = 1e6
    torch.testing.assert_close(weighted_cross_entropy(logits, target, weights), expected)


def test_weights_scale_the_loss_and_gradient_flows():
    logits = torch.zeros((1, 2, 3, 3), requires_grad=True)
    target = torch.ones((1, 3, 3), dtype=torch.int64)
    ones = torch.ones((1, 3, 3))
    loss = weighted_cross_entropy(logits, target, 2 * ones)
    assert loss.item() == pytest.approx(2 * torch.log(torch.tensor(2.0)).item())
    loss.backward()
    assert logits.grad is not None and torch.all(logits.grad[:, 1] < 0)
    assert torch.all(logits.grad[:, 0] > 0)


def test_zero_weight_pixels_get_no_gradient():
    logits = torch.randn((1, 2, 2, 2), requires_grad=True)
    weights = torch.tensor([[[0.0, 1.0], [1.0, 1.0]]])
    weighted_cross_entropy(logits, torch.zeros((1, 2, 2), dtype=torch.int64), weights).backward()
    assert torch.all(logits.grad[0, :, 0, 0] == 0) and torch.any(logits.grad[0, :, 1, 1] != 0)


@pytest.mark.parametrize(
    ("logits", "target", "weights", "error", "match"),
    [
        ((2, 3), (2,), (2,), ValueError, r"\(N, C, \*S\), got shape \(2, 3\)"),
        ((1, 2, 4, 4), (1, 6, 6), (1, 6, 5), ValueError, r"\(1, 6, 6\) and weights \(1, 6, 5\)"),
        ((1, 2, 4, 4), (1, 6), (1, 6), ValueError, r"\(N, \*T\) for logits \(1, 2, 4, 4\)"),
        ((1, 2, 4, 4), (2, 6, 6), (2, 6, 6), ValueError, r"\(N, \*T\) for logits"),
        ((1, 2, 4, 4), (1, 5, 6), (1, 5, 6), ValueError, r"\(1, 5, 6\) cannot be centre-cropped"),
        ((1, 2, 4, 4), (1, 2, 6), (1, 2, 6), ValueError, r"non-negative even amount"),
    ],
)
def test_shape_errors(logits, target, weights, error, match):
    with pytest.raises(error, match=match):
        weighted_cross_entropy(
            torch.zeros(logits), torch.zeros(target, dtype=torch.int64), torch.ones(weights)
        )


def test_dtype_errors():
    logits = torch.zeros((1, 2, 2, 2))
    with pytest.raises(TypeError, match="int64 class indices, got dtype torch.int32"):
        weighted_cross_entropy(logits, torch.zeros((1, 2, 2), dtype=torch.int32), torch.ones(1))
    with pytest.raises(TypeError, match="floating point, got dtype torch.int64"):
        weighted_cross_entropy(
            logits, torch.zeros((1, 2, 2), dtype=torch.int64), torch.ones((1, 2, 2), dtype=int)
        )
