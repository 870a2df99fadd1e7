import torch

from detseg.data import ShapesDataset
from detseg.models import build_model
from detseg.ops import box_iou
from detseg.structures import Boxes, DetSample, Instances

TINY = {
    "name": "faster_rcnn",
    "backbone": {"name": "tiny_convnet", "widths": [8, 16, 32, 32, 32], "out_features": ["c3", "c4"]},
    "neck": {"name": "fpn", "in_features": ["c3", "c4"], "out_channels": 32},
    "proposal_source": {"name": "rpn", "in_features": ["p3", "p4"], "anchor_sizes": [[16, 24], [32, 48]],
                        "pre_nms_top_n": [200, 200], "post_nms_top_n": [100, 50]},
    "roi_head": {"name": "standard", "in_features": ["p3", "p4"], "fc_dim": 64, "batch_size_per_image": 64},
    "num_classes": 3,
}


def sample_with(boxes, labels, size=(64, 64)):
    g = torch.Generator().manual_seed(0)
    image = torch.randint(0, 255, (3, *size), generator=g, dtype=torch.uint8)
    return DetSample(image=image, image_id=1, orig_size=size,
                     gt=Instances(Boxes(torch.tensor(boxes, dtype=torch.float32).reshape(-1, 4)), labels, size))


def test_empty_ground_truth_gives_zero_box_losses_and_positive_classification_losses():
    torch.manual_seed(0)
    model = build_model(TINY)
    losses = model.loss([sample_with([], []), sample_with([], [])])
    assert losses["loss_rpn_box"].item() == 0.0 and losses["loss_box"].item() == 0.0
    assert losses["loss_rpn_cls"].item() > 0 and losses["loss_cls"].item() > 0
    sum(losses.values()).backward()  # graph is valid without objects


def test_one_box_gives_all_losses_positive():
    torch.manual_seed(0)
    model = build_model(TINY)
    losses = model.loss([sample_with([[10, 12, 40, 44]], [2])])
    assert all(v.item() > 0 for v in losses.values()), losses


def test_predictions_are_in_original_image_coordinates():
    """A 64x64 input whose original image was 128 x 256 (h x w): the detections are those
    of the same input taken as original, scaled by 4 in x and 2 in y. The untrained head
    scores every class about 1/4, above the 0.05 threshold, so detections exist."""
    torch.manual_seed(0)
    model = build_model(TINY).eval()
    sample = sample_with([[10, 12, 40, 44]], [1])
    (at_input_size,) = model.predict([sample])
    sample = DetSample(image=sample.image, image_id=1, orig_size=(128, 256), gt=sample.gt)
    (pred,) = model.predict([sample])
    assert pred.image_size == (128, 256) and at_input_size.image_size == (64, 64)
    assert len(pred) > 0 and len(pred) == len(at_input_size)
    torch.testing.assert_close(pred.boxes.tensor, at_input_size.boxes.tensor * torch.tensor([4.0, 2.0, 4.0, 2.0]))
    assert pred.boxes.tensor[:, 2].max() > 64  # reaches beyond the input: really scaled
    assert pred.boxes.tensor[:, 2].max() <= 256 and pred.boxes.tensor[:, 3].max() <= 128
    assert torch.equal(pred.labels, at_input_size.labels) and torch.equal(pred.scores, at_input_size.scores)
    assert pred.labels.dtype == torch.int64


def test_overfits_two_images_until_predictions_reach_the_boxes():
    torch.manual_seed(0)
    model = build_model(TINY)
    dataset = ShapesDataset(num_images=2, image_size=64, max_objects=2, seed=5)
    samples = [dataset[0], dataset[1]]
    optimizer = torch.optim.SGD(model.parameters(), lr=0.02, momentum=0.9)
    for _ in range(250):
        loss = sum(model.loss(samples).values())
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    predictions = model.eval().predict(samples)
    for sample, pred in zip(samples, predictions):
        for box, label in zip(sample.gt.boxes.tensor, sample.gt.labels):
            same_class = pred.labels == label
            assert same_class.any()
            assert box_iou(box[None], pred.boxes.tensor[same_class]).max() > 0.8
