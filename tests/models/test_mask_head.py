import torch
import torch.nn.functional as F

from detseg.data import ShapesDataset
from detseg.models import build_model
from detseg.models.heads.mask_head import mask_targets
from detseg.structures.masks import paste_masks_in_image
from tests.models.test_faster_rcnn import TINY

MASK_RCNN = {**TINY, "name": "mask_rcnn",
             "roi_head": {**TINY["roi_head"], "mask_head": {"pool_size": 7, "conv_dim": 16, "num_convs": 2}}}


def test_mask_targets_by_hand():
    masks = torch.zeros(2, 20, 20, dtype=torch.bool)
    masks[0, 4:12, 2:10] = True   # an 8x8 square at x 2..10, y 4..12
    masks[1, :, :] = True
    boxes = torch.tensor([[2.0, 4.0, 10.0, 12.0],    # exactly the square: all ones
                          [2.0, 4.0, 18.0, 12.0],    # twice as wide: left half ones
                          [0.0, 0.0, 20.0, 20.0]])   # the full mask of object 1
    targets = mask_targets(masks, boxes, torch.tensor([0, 0, 1]), 4)
    assert torch.equal(targets[0], torch.ones(4, 4))
    assert torch.equal(targets[1], torch.tensor([[1.0, 1, 0, 0]] * 4))
    assert torch.equal(targets[2], torch.ones(4, 4))


def test_pasting_matches_a_brute_force_resize():
    g = torch.Generator().manual_seed(0)
    probs = torch.rand(1, 28, 28, generator=g)
    box = torch.tensor([[8.0, 4.0, 64.0, 32.0]])  # 56 x 28 pixels: 2x the mask in x, 1x in y
    pasted = paste_masks_in_image(probs, box, (40, 80))
    resized = F.interpolate(probs[None], size=(28, 56), mode="bilinear", align_corners=False)[0, 0] >= 0.5
    expected = torch.zeros(40, 80, dtype=torch.bool)
    expected[4:32, 8:64] = resized
    assert (pasted[0] == expected).float().mean() > 0.995  # border pixels may differ by interpolation


def test_mask_rcnn_two_iterations_and_masks_in_predictions():
    """Two steps train, then the (still untrained, scores about 1/4) model detects, and each
    detection carries a mask of the image's size that lies inside its box."""
    torch.manual_seed(0)
    model = build_model(MASK_RCNN)
    samples = [ShapesDataset(num_images=2, image_size=64)[i] for i in range(2)]
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01)
    for _ in range(2):
        losses = model.loss(samples)
        assert losses["loss_mask"].item() > 0
        optimizer.zero_grad()
        sum(losses.values()).backward()
        optimizer.step()
    (pred,) = model.eval().predict(samples[:1])
    assert len(pred) > 0
    assert pred.masks is not None and pred.masks.shape == (len(pred), 64, 64) and pred.masks.dtype == torch.bool
    assert pred.masks.flatten(1).any(1).all()  # every detection's mask has pixels
    # pixel (y, x) of a mask has its centre (x + .5, y + .5) inside the detection's box
    centres = torch.arange(64) + 0.5
    x1, y1, x2, y2 = (v[:, None] for v in pred.boxes.tensor.unbind(1))
    inside = ((centres >= y1) & (centres <= y2))[:, :, None] & ((centres >= x1) & (centres <= x2))[:, None, :]
    assert not (pred.masks & ~inside).any()
