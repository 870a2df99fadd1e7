import numpy as np

from detseg.data.shapes import ShapesDataset, masks_to_boxes


def test_same_seed_same_pixels_other_seed_or_split_other_pixels():
    a, b = ShapesDataset(num_images=3, seed=1), ShapesDataset(num_images=3, seed=1)
    assert np.array_equal(a.load(2).image, b.load(2).image)
    assert not np.array_equal(a.load(2).image, ShapesDataset(num_images=3, seed=2).load(2).image)
    assert not np.array_equal(a.load(2).image, ShapesDataset("val", num_images=3, seed=1).load(2).image)


def test_boxes_masks_and_semantic_map_agree():
    dataset = ShapesDataset(num_images=30, image_size=96, seed=0)
    counts = []
    for i in range(len(dataset)):
        record = dataset.load(i)
        n = len(record.labels)
        counts.append(n)
        assert 1 <= n <= 5 and record.image.shape == (96, 96, 3)
        assert np.array_equal(masks_to_boxes(record.masks), record.boxes)
        expected = np.zeros((96, 96), np.uint8)
        for label, mask in zip(record.labels, record.masks):
            assert not (expected[mask.astype(bool)] > 0).any(), "visible masks must not overlap"
            expected[mask.astype(bool)] = label + 1
        assert np.array_equal(expected, record.sem_seg)
        assert set(record.labels.tolist()) <= {0, 1, 2}
    assert max(counts) > 1


def test_objects_overlap_sometimes_but_stay_half_visible():
    dataset = ShapesDataset(num_images=40, seed=0)
    overlaps = 0
    for i in range(len(dataset)):
        record = dataset.load(i)
        b = record.boxes
        for j in range(len(b)):
            for k in range(j + 1, len(b)):
                iw = min(b[j, 2], b[k, 2]) - max(b[j, 0], b[k, 0])
                ih = min(b[j, 3], b[k, 3]) - max(b[j, 1], b[k, 1])
                overlaps += iw > 0 and ih > 0
        assert (record.masks.reshape(len(b), -1).sum(1) >= 16).all()
    assert overlaps > 0


def test_sample_contract():
    sample = ShapesDataset(num_images=2)[1]
    assert sample.image.dtype.is_floating_point is False and sample.image.shape[0] == 3
    assert sample.gt.boxes.tensor.dtype.is_floating_point and sample.gt.labels.dtype.is_signed
    assert sample.gt.masks.shape[1:] == sample.image_size == sample.orig_size
    assert sample.gt_sem_seg.shape == sample.image_size and sample.gt_ignore is None
