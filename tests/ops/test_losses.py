import numpy as np
import pytest
import torch
import torch.nn.functional as F

from detseg.models import build_model
from detseg.ops import cross_entropy, sigmoid_focal_loss, smooth_l1_loss, soft_dice_loss


def test_smooth_l1_matches_the_piecewise_formula():
    g = torch.Generator().manual_seed(0)
    x, y = torch.randn(50, 4, generator=g) * 2, torch.randn(50, 4, generator=g)
    for beta in (1.0, 1 / 9, 0.0):
        d = (x - y).abs()
        ref = torch.where(d < beta, 0.5 * d**2 / beta, d - 0.5 * beta) if beta > 0 else d
        assert torch.allclose(smooth_l1_loss(x, y, beta=beta, reduction="sum"), ref.sum(), rtol=1e-5)
        assert torch.allclose(smooth_l1_loss(x, y, beta=beta, reduction="mean"), ref.mean(), rtol=1e-5)
    assert smooth_l1_loss(torch.zeros(0, 4), torch.zeros(0, 4)).item() == 0.0


def test_smooth_l1_by_hand_at_the_configured_betas():
    """Hand values at |x| = 0.5, 1, 2 (either sign): beta 1 (the RoI and SSD heads) gives
    0.5 * 0.25 = 0.125, then 1 - 0.5 = 0.5 and 2 - 0.5 = 1.5; beta 1/9 (the RPN) is past
    the quadratic part at all three: |x| - 1/18, while 0.1 < 1/9 gives 0.5 * 0.01 * 9."""
    from tests.models.test_faster_rcnn import TINY

    model = build_model(TINY)  # the Faster R-CNN defaults
    assert model.roi_head.smooth_l1_beta == 1.0 and model.proposal_source.smooth_l1_beta == pytest.approx(1 / 9)
    x = torch.tensor([0.5, 1.0, 2.0, -0.5, -1.0, -2.0])
    target = torch.zeros(6)
    torch.testing.assert_close(smooth_l1_loss(x, target, beta=1.0, reduction="none"),
                               torch.tensor([0.125, 0.5, 1.5] * 2))
    assert smooth_l1_loss(x, target, beta=1.0).item() == pytest.approx(2 * (0.125 + 0.5 + 1.5))
    torch.testing.assert_close(smooth_l1_loss(x, target, beta=1 / 9, reduction="none"),
                               torch.tensor([0.5 - 1 / 18, 1 - 1 / 18, 2 - 1 / 18] * 2))
    assert smooth_l1_loss(torch.tensor([0.1]), torch.zeros(1), beta=1 / 9).item() == pytest.approx(0.045)
    assert smooth_l1_loss(x, target, beta=0.0, reduction="none").tolist() == [0.5, 1.0, 2.0] * 2  # L1


def test_cross_entropy_ignores_pixels_and_handles_all_ignored():
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(2, 4, 5, 6, generator=g)
    target = torch.randint(0, 4, (2, 5, 6), generator=g)
    target[0, :2] = 255
    valid = target != 255
    log_p = logits.log_softmax(1).permute(0, 2, 3, 1)[valid]
    ref = -log_p[torch.arange(len(log_p)), target[valid]].mean()
    assert torch.allclose(cross_entropy(logits, target), ref, atol=1e-6)
    all_ignored = cross_entropy(logits, torch.full_like(target, 255))
    assert all_ignored.item() == 0.0 and not torch.isnan(all_ignored)


def test_sigmoid_focal_matches_formula():
    g = torch.Generator().manual_seed(0)
    logits, target = torch.randn(30, 5, generator=g), (torch.rand(30, 5, generator=g) > 0.7).float()
    p = torch.sigmoid(logits)
    p_t = p * target + (1 - p) * (1 - target)
    alpha_t = 0.25 * target + 0.75 * (1 - target)
    ce = F.binary_cross_entropy_with_logits(logits, target, reduction="none")
    ref = (alpha_t * (1 - p_t) ** 2 * ce).sum()
    assert torch.allclose(sigmoid_focal_loss(logits, target), ref, rtol=1e-5)
    assert sigmoid_focal_loss(torch.zeros(0, 5), torch.zeros(0, 5)).item() == 0.0


def test_soft_dice_matches_numpy_and_is_zero_for_perfect_predictions():
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(2, 3, 4, 4, generator=g)
    target = torch.randint(0, 3, (2, 4, 4), generator=g)
    target[1, 0] = 255
    probs = logits.softmax(1).numpy()
    t = target.numpy()
    valid = t != 255
    ref = []
    for c in range(3):
        pc = probs[:, c][valid]
        yc = (t[valid] == c).astype(float)
        ref.append(1 - (2 * (pc * yc).sum() + 1) / (pc.sum() + yc.sum() + 1))
    assert np.allclose(soft_dice_loss(logits, target, reduction="none").numpy(), ref, atol=1e-6)
    assert np.isclose(soft_dice_loss(logits, target).item(), np.mean(ref), atol=1e-6)
    perfect = F.one_hot(target.clamp(max=2), 3).permute(0, 3, 1, 2).float() * 100
    assert soft_dice_loss(perfect, target).item() == pytest.approx(0.0, abs=1e-4)
