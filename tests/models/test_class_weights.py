"""Per-class loss weights of the detector heads: each weight multiplies the classification
terms of its class and nothing else, so the loss is linear in each weight, additive over the
classes, and the same as unweighted when every weight is 1."""

import pytest
import torch

from detseg.config import load_node
from detseg.data.shapes import ShapesDataset
from detseg.errors import ConfigError
from detseg.models import build_model

# (model config, the node that takes class_weights, the loss terms that classify)
FAMILIES = [
    ("faster_rcnn_tiny", "roi_head", ["loss_cls"]),
    ("ssd_tiny", "head", ["loss_cls"]),
    ("yolo_tiny", "head", ["loss_cls"]),
    ("yolo_v1_tiny", "head", ["loss_cls"]),
    ("rcnn_tiny", "roi_head", ["loss_cls", "loss_svm"]),
]


@pytest.fixture(scope="module")
def samples():
    dataset = ShapesDataset(split="train", num_images=2, seed=5)
    batch = [dataset[i] for i in range(2)]
    present = set(torch.cat([s.gt.labels for s in batch]).tolist())
    assert present == {0, 1, 2}, "the test needs every class in the batch"
    return batch


def classification_loss(config: str, node: str, terms: list[str], samples, weights) -> float:
    cfg = load_node(f"configs/model/{config}.yaml")
    cfg.num_classes = 3  # the shapes' classes (without a data set, the config says it)
    if config == "rcnn_tiny":
        cfg.roi_head.classifier = "svm"
    target = cfg[node]
    target.class_weights = weights
    torch.manual_seed(0)
    model = build_model(cfg)
    model.train()
    torch.manual_seed(1)  # the same RoI sampling, dropout and SVM negatives for every weighting
    losses = model.loss(samples)
    return sum(losses[t].item() for t in terms)


@pytest.mark.parametrize("config, node, terms", FAMILIES, ids=[f[0] for f in FAMILIES])
def test_class_weights_multiply_each_class_term(config, node, terms, samples):
    def loss(weights):
        return classification_loss(config, node, terms, samples, weights)

    unweighted, ones = loss(None), loss([1.0, 1.0, 1.0])
    assert ones == pytest.approx(unweighted, rel=1e-5)
    per_class = [loss([2.0 if c == k else 1.0 for c in range(3)]) - ones for k in range(3)]
    assert all(term > 0 for term in per_class), per_class
    tolerance = 1e-4 * abs(ones) + 1e-6
    assert loss([3.0, 1.0, 1.0]) - ones == pytest.approx(2 * per_class[0], abs=tolerance)  # linear
    assert loss([2.0, 2.0, 2.0]) - ones == pytest.approx(sum(per_class), abs=tolerance)  # additive


def test_class_weights_of_the_wrong_length_name_the_node():
    cfg = load_node("configs/model/ssd_tiny.yaml")
    cfg.num_classes = 3
    cfg.head.class_weights = [1.0, 2.0]
    with pytest.raises(ConfigError, match=r"ssd head.class_weights has 2 values for 3 classes"):
        build_model(cfg)
