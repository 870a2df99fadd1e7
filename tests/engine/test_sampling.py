"""Class-balanced (repeat-factor) sampling and aspect-ratio grouping of the training stream."""

import math
from collections import Counter

import numpy as np
import pytest
import torch

from detseg.data import DetectionDataset, ImageRecord, LoaderConfig
from detseg.engine.sampler import InfiniteSampler, aspect_ratio_groups, repeat_factors
from detseg.engine.trainer import TrainConfig, Trainer
from detseg.errors import ConfigError
from detseg.experiment import build_split, load_experiment
from detseg.models.base import Model


def test_repeat_factors_follow_the_lvis_rule_on_a_hand_worked_example():
    # f(0) = 3/4, f(1) = 1/4, f(2) = 2/4 of the four images; threshold 0.5:
    # r(0) = max(1, sqrt(0.5 / 0.75)) = 1, r(1) = sqrt(0.5 / 0.25) = sqrt(2), r(2) = 1;
    # an image repeats the largest r of its classes, an image without objects once.
    labels = [np.array([0, 0]), np.array([0, 2]), np.array([0, 1, 2]), np.array([], np.int64)]
    np.testing.assert_allclose(repeat_factors(labels, 0.5), [1.0, 1.0, math.sqrt(2), 1.0])
    # threshold 2: r(0) = sqrt(2 / 0.75), r(1) = sqrt(8), r(2) = 2
    np.testing.assert_allclose(repeat_factors(labels, 2.0), [math.sqrt(2 / 0.75), 2.0, math.sqrt(8), 1.0])


def test_an_epoch_holds_each_image_its_repeat_factor_times_on_average():
    factors = [1.0, 2.5, 1.2, 3.0]
    sampler = InfiniteSampler(4, seed=1, repeat_factors=factors)
    counts = np.zeros(4)
    epochs = 400
    for epoch in range(epochs):
        per_image = Counter(sampler.epoch_order(epoch).tolist())
        for image, factor in enumerate(factors):  # floor(r) always, one more with prob frac(r)
            assert math.floor(factor) <= per_image[image] <= math.ceil(factor)
            counts[image] += per_image[image]
    np.testing.assert_allclose(counts / epochs, factors, atol=0.08)


def test_grouped_batches_hold_one_orientation_on_every_rank():
    groups = aspect_ratio_groups([(100, 200)] * 7 + [(300, 100)] * 6 + [(50, 50)] * 4)
    assert groups.tolist() == [0] * 7 + [1] * 6 + [0] * 4
    batch_size, ranks = 2, 2
    streams = [iter(InfiniteSampler(len(groups), seed=4, rank=r, num_replicas=ranks, groups=groups,
                                    group_size=batch_size * ranks)) for r in range(ranks)]
    for _ in range(30):
        batches = [[next(s)[0] for _ in range(batch_size)] for s in streams]
        assert len({int(groups[i]) for batch in batches for i in batch}) == 1, batches


def test_a_resumed_stream_with_both_options_continues_the_uninterrupted_one():
    options = {"seed": 2, "repeat_factors": [1.0, 1.7, 2.2, 1.0, 1.0], "groups": [0, 1, 0, 1, 0], "group_size": 2}
    stream = [next(it) for it in [iter(InfiniteSampler(5, **options))] for _ in range(60)]
    later = iter(InfiniteSampler(5, start=22, **options))
    assert [next(later) for _ in range(38)] == stream[22:]
    ranks = [iter(InfiniteSampler(5, rank=r, num_replicas=2, **options)) for r in range(2)]
    assert [next(ranks[k % 2]) for k in range(60)] == stream


def test_grouping_refuses_a_batch_no_group_can_fill():
    with pytest.raises(ValueError, match="at least 4 images"):
        InfiniteSampler(5, groups=[0, 0, 0, 1, 1], group_size=4)


class OrientedSet(DetectionDataset):
    """Blank images, landscape or portrait, with one object of the given class each."""

    def __init__(self, labels, portrait):
        super().__init__()
        self.class_names, self.category_ids = ["common", "rare"], [1, 2]
        self.labels, self.portrait = labels, portrait

    def __len__(self):
        return len(self.labels)

    def load(self, index):
        size = (12, 8) if self.portrait[index] else (8, 12)
        record = ImageRecord.unlabeled(np.zeros((*size, 3), np.uint8), index)
        return record.replace(boxes=np.array([[1, 1, 5, 5]], np.float32),
                              labels=np.array([self.labels[index]]), ignore=np.zeros(1, bool))


class Constant(Model):
    def __init__(self):
        super().__init__()
        self.bias = torch.nn.Parameter(torch.zeros(()))

    def loss(self, samples):
        return {"loss": self.bias ** 2}


def drawn_images(dataset, tmp_path, draws=400, **loader):
    trainer = Trainer(Constant(), TrainConfig(max_iters=1), dataset,
                      LoaderConfig(dataset={}, batch_size=4, shuffle=True, **loader), tmp_path,
                      torch.device("cpu"), {}, progress=False)
    batches = iter(trainer._loader())
    return [[s.image_id for s in next(batches)] for _ in range(draws // 4)]


def test_the_trainer_draws_rare_classes_more_often_and_batches_by_orientation(tmp_path):
    labels = [0] * 18 + [1] * 2  # the rare class is in 1 image of 10
    portrait = [i % 2 == 1 for i in range(20)]
    dataset = OrientedSet(labels, portrait)

    def rare_share(batches):
        ids = [i for batch in batches for i in batch]
        return sum(labels[i] == 1 for i in ids) / len(ids)

    plain = rare_share(drawn_images(dataset, tmp_path / "plain"))
    balanced = drawn_images(dataset, tmp_path / "rfs", repeat_factor_threshold=0.4, group_by_aspect_ratio=True)
    # r(rare) = sqrt(0.4 / 0.1) = 2: 4 of 22 draws per epoch instead of 2 of 20
    assert plain == pytest.approx(0.1, abs=0.03)
    assert rare_share(balanced) == pytest.approx(4 / 22, abs=0.03)
    assert all(len({portrait[i] for i in batch}) == 1 for batch in balanced)


def test_a_threshold_that_is_not_a_fraction_is_refused_by_key(tmp_path):
    with pytest.raises(ConfigError, match=r"data.train.repeat_factor_threshold must be > 0"):
        drawn_images(OrientedSet([0, 1], [False, False]), tmp_path, repeat_factor_threshold=0.0)


def test_sampling_options_on_an_evaluation_split_are_refused():
    cfg = load_experiment("configs/faster_rcnn/shapes.yaml", ["data.val.repeat_factor_threshold=0.1"])
    with pytest.raises(ConfigError, match=r"data.val.repeat_factor_threshold: a sampling option of the training"):
        build_split(cfg, "val")
