"""Mosaic: every object that stays visible enough is kept, with its mask, and its box is its
mask's box; objects are identified in the output by a colour of their own."""

import itertools

import cv2
import numpy as np
import pytest

from detseg.data import DetectionDataset, ImageRecord, build_dataset, build_transforms
from detseg.data.mosaic import Mosaic, close_mosaic_due
from detseg.errors import ConfigError

SIZE = 64
# (height, width) of the four images: the longest side is SIZE, so the mosaic does not resize
SHAPES = [(48, 64), (64, 40), (64, 64), (30, 64)]


def colour(label):
    """A colour of its own per object, never the fill (114) nor the background (0)."""
    return (40 + 5 * label, 200 - 3 * label, 250 - 7 * label)


def record_with_ellipses(index, height, width, rng, first_label):
    """An image with 3 non-overlapping ellipses (one per third of the width), each painted
    in its own colour; boxes are the masks' boxes."""
    image = np.zeros((height, width, 3), np.uint8)
    masks, boxes, labels = [], [], []
    for k in range(3):
        label = first_label + k
        mask = np.zeros((height, width), np.uint8)
        third = width / 3
        cx, cy = int(third * k + third / 2), int(rng.integers(height // 4, 3 * height // 4))
        axes = (int(rng.integers(2, third / 2 - 1)), int(rng.integers(3, height // 4)))
        cv2.ellipse(mask, (cx, cy), axes, 0, 0, 360, 1, -1)
        image[mask == 1] = colour(label)
        rows, cols = np.flatnonzero(mask.any(1)), np.flatnonzero(mask.any(0))
        boxes.append([cols[0], rows[0], cols[-1] + 1, rows[-1] + 1])
        masks.append(mask)
        labels.append(label)
    return ImageRecord(image=image, image_id=index, orig_size=(height, width), boxes=np.array(boxes, np.float32),
                       labels=np.array(labels, np.int64), ignore=np.zeros(3, bool), masks=np.stack(masks))


class Records(DetectionDataset):
    """A data set of given records."""

    def __init__(self, records, transforms=None):
        super().__init__(transforms)
        self.records = records
        self.class_names = [f"c{i}" for i in range(40)]
        self.category_ids = list(range(40))

    def __len__(self):
        return len(self.records)

    def load(self, index):
        return self.records[index]


@pytest.fixture(scope="module")
def four():
    rng = np.random.default_rng(0)
    return [record_with_ellipses(i, h, w, rng, 3 * i) for i, (h, w) in enumerate(SHAPES)]


def test_every_object_visible_enough_survives_with_its_mask_and_its_masks_box(four):
    pixels = {int(label): int(mask.sum()) for r in four for label, mask in zip(r.labels, r.masks)}
    mosaic = Mosaic(SIZE, min_visibility=0.25)
    kept_some_cut = dropped_some = 0
    for junction in itertools.product(range(0, SIZE + 1, 8), repeat=2):
        out = mosaic.combine(four, junction)
        assert out.image.shape == (SIZE, SIZE, 3) and out.masks.shape == (len(out.boxes), SIZE, SIZE)
        survivors = dict(zip(out.labels.tolist(), range(len(out.labels))))
        for label, total in pixels.items():
            painted = (out.image == colour(label)).all(-1)
            share = painted.sum() / total
            if share >= 0.25 + 1e-9:
                assert label in survivors, f"object {label} is {share:.2f} visible at {junction} but was dropped"
                i = survivors[label]
                assert np.array_equal(out.masks[i].astype(bool), painted)  # the mask is exactly the visible part
                rows, cols = np.flatnonzero(painted.any(1)), np.flatnonzero(painted.any(0))
                mask_box = [cols[0], rows[0], cols[-1] + 1, rows[-1] + 1]
                assert np.abs(out.boxes[i] - mask_box).max() <= 1.0, (label, junction, out.boxes[i], mask_box)
                kept_some_cut += share < 1
            elif share < 0.25 - 1e-9:
                assert label not in survivors, f"object {label} is only {share:.2f} visible at {junction}"
                dropped_some += 1
    assert kept_some_cut > 50 and dropped_some > 50  # both cases were exercised


def test_resized_images_keep_boxes_on_their_masks(four):
    """Images resized to a longest side of 100: each box still bounds its mask within 1 px."""
    mosaic = Mosaic(100, min_visibility=0.0)
    for junction in [(0, 0), (37, 81), (50, 50), (100, 13)]:
        out = mosaic.combine(four, junction)
        for box, mask in zip(out.boxes, out.masks):
            rows, cols = np.flatnonzero(mask.any(1)), np.flatnonzero(mask.any(0))
            assert np.abs(box - [cols[0], rows[0], cols[-1] + 1, rows[-1] + 1]).max() <= 1.0
        assert ((out.boxes >= 0) & (out.boxes <= 100)).all()


def test_a_junction_at_a_corner_shows_one_image_whole(four):
    out = Mosaic(SIZE).combine(four, (0, 0))  # everything but the bottom right image is outside
    h, w = SHAPES[3]
    assert np.array_equal(out.image[:h, :w], four[3].image) and (out.image[h:] == 114).all()
    assert out.labels.tolist() == four[3].labels.tolist()
    np.testing.assert_array_equal(out.boxes, four[3].boxes)


def test_seeded_mosaics_repeat_and_p_zero_leaves_the_sample_alone(four):
    pipeline = build_transforms([{"name": "mosaic", "size": SIZE}, {"name": "horizontal_flip", "p": 0.5}])
    dataset = Records(four, pipeline)
    a, b, c = dataset[(1, 5)], dataset[(1, 5)], dataset[(1, 6)]
    assert (a.image == b.image).all() and (a.gt.boxes.tensor == b.gt.boxes.tensor).all()
    assert not ((a.image.shape == c.image.shape) and bool((a.image == c.image).all()))
    untouched = Records(four, build_transforms([{"name": "mosaic", "size": SIZE, "p": 0.0}]))[(1, 5)]
    assert untouched.image.shape[1:] == SHAPES[1] and (untouched.image.permute(1, 2, 0).numpy() == four[1].image).all()


def test_closing_turns_mosaic_and_affine_off_and_a_copy_draws_from_its_own_data_set(four):
    import copy

    pipeline = build_transforms([{"name": "mosaic", "size": 32}, {"name": "random_affine"}])
    dataset = Records(four, pipeline)
    assert dataset[(1, 0)].image.shape[1:] == (32, 32)
    clone = copy.deepcopy(dataset)
    assert clone.transforms.source is clone
    assert dataset.close_mosaic() and not dataset.close_mosaic()  # once
    assert dataset[(1, 0)].image.shape[1:] == SHAPES[1] and clone[(1, 0)].image.shape[1:] == (32, 32)


def test_configuration_mistakes_are_refused():
    with pytest.raises(ConfigError, match=r"transforms\[1\]: mosaic must be the first transform"):
        build_transforms([{"name": "horizontal_flip"}, {"name": "mosaic", "size": 32}])
    shapes = {"name": "shapes", "num_images": 4, "image_size": 32}
    with pytest.raises(ConfigError, match=r"data.val.transforms: mosaic and random_affine are training"):
        build_dataset({"dataset": shapes, "transforms": [{"name": "random_affine"}]}, "data.val")
    with pytest.raises(ConfigError, match=r"data.train.close_mosaic: 5, but data.train.transforms has no mosaic"):
        build_dataset({"dataset": shapes, "close_mosaic": 5}, "data.train")
    with pytest.raises(ConfigError, match=r"data.train.transforms\[0\]: cannot build .*size must be at least 2"):
        build_transforms([{"name": "mosaic", "size": 1}], "data.train.transforms")


def test_close_mosaic_is_due_for_the_last_iterations_or_the_rest_of_the_budget():
    assert [close_mosaic_due(3, i, 10) for i in range(10)] == [False] * 7 + [True] * 3
    assert not any(close_mosaic_due(0, i, 10) for i in range(10))

    class Budget:  # 100 s, 60 spent in 6 steps of this run: 10 s an iteration
        seconds, elapsed, spent_before, steps = 100.0, 60.0, 0.0, 6

    assert close_mosaic_due(4, 6, 1000, Budget()) and not close_mosaic_due(3, 6, 1000, Budget())
    Budget.steps = 0
    assert not close_mosaic_due(4, 6, 1000, Budget())  # no pace yet
    # a share: the last 0.25 of 8 iterations, or of the 100 s
    assert [close_mosaic_due(0.25, i, 8) for i in range(8)] == [False] * 6 + [True] * 2
    Budget.elapsed = 74.0
    assert not close_mosaic_due(0.25, 6, 1000, Budget())
    Budget.elapsed = 75.0
    assert close_mosaic_due(0.25, 6, 1000, Budget())


def test_close_mosaic_is_a_share_or_a_whole_number():
    shapes = {"name": "shapes", "num_images": 4, "image_size": 32}
    with pytest.raises(ConfigError, match=r"data.train.close_mosaic: 2.5 is neither a share of the run"):
        build_dataset({"dataset": shapes, "transforms": [{"name": "random_affine"}], "close_mosaic": 2.5},
                      "data.train")
    assert build_dataset({"dataset": shapes, "transforms": [{"name": "random_affine"}], "close_mosaic": 0.1},
                         "data.train").transforms.has_mosaic
