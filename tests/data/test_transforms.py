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
    dropped = 0
    for i in range(20):
        full = ShapesDataset(num_images=20, seed=1).load(i)
        sample = dataset[i]
        assert len(sample.gt) == sample.gt.masks.shape[0] <= len(full.labels)
        assert (sample.gt.boxes.widths() >= 1).all() and (sample.gt.boxes.heights() >= 1).all()
        dropped += len(full.labels) - len(sample.gt)
    assert dropped > 0


def test_unknown_transform_argument_is_a_config_error():
    from detseg.errors import ConfigError

    with pytest.raises(ConfigError, match=r"transforms\[0\]: unexpected key 'heigth'.*did you mean 'height'"):
        build_transforms([{"name": "resize", "heigth": 3, "width": 3}])


def test_dataloader_yields_lists_of_samples():
    cfg = {"dataset": {"name": "shapes", "num_images": 5}, "batch_size": 2}
    batches = list(build_dataloader(cfg))
    assert [len(b) for b in batches] == [2, 2, 1]
    assert batches[0][0].image_id == 1
