import numpy as np
import pytest
import torch

from detseg.data import ShapesDataset, build_dataloader, build_transforms
from detseg.data.shapes import masks_to_boxes


def test_flip_moves_boxes_masks_and_semantic_map_exactly():
    plain = ShapesDataset(num_images=5, seed=4)
    flipped = ShapesDataset(num_images=5, seed=4, transforms=build_transforms([{"name": "horizontal_flip", "p": 1.0}]))
    for i in range(5):
        a, b = plain[i], flipped[i]
        assert torch.equal(b.image, a.image.flip(-1))
        assert torch.equal(b.gt.masks, a.gt.masks.flip(-1))
        assert torch.equal(b.gt_sem_seg, a.gt_sem_seg.flip(-1))
        x1, y1, x2, y2 = a.gt.boxes.tensor.unbind(1)
        assert torch.allclose(b.gt.boxes.tensor, torch.stack([128 - x2, y1, 128 - x1, y2], 1), atol=1e-3)


def test_resize_and_pad_keep_boxes_on_their_masks():
    pipeline = build_transforms([{"name": "resize", "height": 200, "width": 160},
                                 {"name": "pad_if_needed", "min_height": 224, "min_width": 224, "fill_mask": 255}])
    dataset = ShapesDataset(num_images=6, seed=2, transforms=pipeline)
    for i in range(6):
        sample = dataset[i]
        assert sample.image_size == (224, 224) and sample.orig_size == (128, 128)
        tight = masks_to_boxes(sample.gt.masks.numpy().astype(np.uint8))
        assert np.abs(tight - sample.gt.boxes.tensor.numpy()).max() <= 1.5
        assert set(sample.gt_sem_seg.unique().tolist()) <= {0, 1, 2, 3, 255}


def test_boxes_cropped_out_are_dropped_with_their_masks():
    pipeline = build_transforms([{"name": "center_crop", "height": 32, "width": 32}])
    dataset = ShapesDataset(num_images=20, seed=1, transforms=pipeline)
    dropped = kept = 0
    for i in range(20):
        full = ShapesDataset(num_images=20, seed=1).load(i)
        sample = dataset[i]
        assert len(sample.gt) == sample.gt.masks.shape[0] <= len(full.labels)
        assert (sample.gt.boxes.widths() >= 1).all() and (sample.gt.boxes.heights() >= 1).all()
        dropped += len(full.labels) - len(sample.gt)
        kept += len(sample.gt)
    assert dropped > 0 and kept > 0  # both branches happen: the size check above is not vacuous


def test_unknown_transform_argument_is_a_config_error():
    from detseg.errors import ConfigError

    with pytest.raises(ConfigError, match=r"transforms\[0\]: unexpected key 'heigth'.*did you mean 'height'"):
        build_transforms([{"name": "resize", "heigth": 3, "width": 3}])


def test_dataloader_yields_lists_of_samples():
    cfg = {"dataset": {"name": "shapes", "num_images": 5}, "batch_size": 2}
    batches = list(build_dataloader(cfg))
    assert [len(b) for b in batches] == [2, 2, 1]
    assert batches[0][0].image_id == 1


def test_min_iou_crop_patches_overlap_an_object_whose_centre_they_hold():
    from detseg.data.ssd_augment import MinIoURandomCrop

    crop = MinIoURandomCrop(min_ious=[0.5], scale=(0.3, 1.0))
    crop.set_random_seed(0)
    boxes = np.array([[5, 5, 45, 45], [60, 60, 95, 95]], dtype=float)
    patches = 0
    for _ in range(30):
        x1, y1, x2, y2 = crop.get_params_dependent_on_data({"shape": (100, 100, 3)}, {"bboxes": boxes / 100})["crop_coords"]
        if (x1, y1, x2, y2) == (0, 0, 100, 100):
            continue
        patches += 1
        centres = (boxes[:, :2] + boxes[:, 2:]) / 2
        inside = (centres[:, 0] > x1) & (centres[:, 0] < x2) & (centres[:, 1] > y1) & (centres[:, 1] < y2)
        iw = (np.minimum(boxes[:, 2], x2) - np.maximum(boxes[:, 0], x1)).clip(0)
        ih = (np.minimum(boxes[:, 3], y2) - np.maximum(boxes[:, 1], y1)).clip(0)
        iou = iw * ih / ((boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1]) + (x2 - x1) * (y2 - y1) - iw * ih)
        assert (iou[inside] >= 0.5).any()
    assert patches > 5


def test_min_iou_crop_drops_objects_whose_centre_is_outside_with_their_masks():
    from detseg.data.record import ImageRecord

    masks = np.zeros((2, 100, 100), np.uint8)
    masks[0, 5:45, 5:45] = 1
    masks[1, 40:95, 40:95] = 1
    record = ImageRecord(image=np.zeros((100, 100, 3), np.uint8), image_id=1, orig_size=(100, 100),
                         boxes=np.array([[5, 5, 45, 45], [40, 40, 95, 95]], np.float32),
                         labels=np.array([0, 1]), ignore=np.zeros(2, bool), masks=masks)
    pipeline = build_transforms([{"name": "min_iou_random_crop", "min_ious": [0.0], "scale": [0.5, 0.5]}])
    pipeline.transforms[0].get_params_dependent_on_data = lambda params, data: {"crop_coords": (0, 0, 50, 50)}
    out = pipeline(record)
    # the second object reaches into the patch, but its centre (67.5, 67.5) does not
    assert out.labels.tolist() == [0] and out.masks.shape == (1, 50, 50)
    np.testing.assert_allclose(out.boxes, [[5, 5, 45, 45]])
