import numpy as np
import pytest
import torch
import torch.nn.functional as F
from omegaconf import OmegaConf

from detseg.config import load_node
from detseg.errors import ConfigError
from detseg.evaluation.segmentation import confusion_matrix, segmentation_metrics
from detseg.models import build_model
from detseg.models.segmenters.upsample import Upsample
from detseg.structures import DetSample, SemanticMap


def test_bilinear_upsampling_reproduces_the_2x2_to_4x4_example():
    """align_corners=False: output pixel o samples source (o + 0.5) / 2 - 0.5, clamped to
    [0, 1], i.e. weights (1, 0), (.75, .25), (.25, .75), (0, 1) along each axis. Rows
    [10, 20] and [30, 40] become [10, 12.5, 17.5, 20] and [30, 32.5, 37.5, 40]; the middle
    rows mix them .75/.25 and .25/.75."""
    x = torch.tensor([[10.0, 20.0], [30.0, 40.0]])[None, None]
    assert Upsample("bilinear", 1, 2)(x)[0, 0].tolist() == [[10.0, 12.5, 17.5, 20.0],
                                                             [15.0, 17.5, 22.5, 25.0],
                                                             [25.0, 27.5, 32.5, 35.0],
                                                             [30.0, 32.5, 37.5, 40.0]]


def test_nearest_upsampling_copies_each_value_into_a_2x2_block():
    x = torch.tensor([[10.0, 20.0], [30.0, 40.0]])[None, None]
    assert Upsample("nearest", 1, 2)(x)[0, 0].tolist() == [[10, 10, 20, 20], [10, 10, 20, 20],
                                                            [30, 30, 40, 40], [30, 30, 40, 40]]


def test_max_unpooling_puts_values_back_at_the_max_positions():
    x = torch.tensor([[1.0, 4, 3, 1], [2, 3, 5, 2], [10, 9, 2, 3], [7, 3, 4, 20]])[None, None]
    pooled, indices = F.max_pool2d(x, 2, 2, return_indices=True)
    assert pooled[0, 0].tolist() == [[4, 5], [10, 20]]
    restored = Upsample("unpool", 1, 2)(pooled, indices=indices)[0, 0]
    assert restored.tolist() == [[0, 4, 0, 0], [0, 0, 5, 0], [10, 0, 0, 0], [0, 0, 0, 20]]


def test_the_transposed_convolution_example():
    """The lecture's stride-1 example: each input value scales the kernel, placed at its
    position, and the overlaps add up (the middle: 0*3 + 1*2 + 2*1 + 3*0 = 4)."""
    x = torch.tensor([[0.0, 1.0], [2.0, 3.0]])[None, None]
    kernel = torch.tensor([[0.0, 1.0], [2.0, 3.0]])[None, None]
    assert F.conv_transpose2d(x, kernel, stride=1)[0, 0].tolist() == [[0, 0, 1], [0, 4, 6], [4, 12, 9]]


def test_transposed_upsampling_module_reproduces_the_stride_2_example():
    """detseg's ``transposed`` Upsample (factor 2: a 4x4 kernel, stride 2, padding 1, on a
    replicate-padded input cropped back) with the lecture's 2x2 kernel in the middle of its
    4x4 weights is the plain stride-2 transposed convolution: each input value x[i, j]
    writes x[i, j] * kernel into the 2x2 block at (2i, 2j), without overlaps:
    0 * K top left, 1 * K top right, 2 * K bottom left, 3 * K bottom right."""
    up = Upsample("transposed", 1, 2)
    # its initial weights are the bilinear kernel: the outer product of (1/4, 3/4, 3/4, 1/4)
    line = torch.tensor([0.25, 0.75, 0.75, 0.25])
    assert torch.equal(up.deconv.weight[0, 0], line[:, None] * line[None, :])
    x = torch.tensor([[0.0, 1.0], [2.0, 3.0]])[None, None]
    with torch.no_grad():
        up.deconv.weight.zero_()
        up.deconv.weight[0, 0, 1:3, 1:3] = torch.tensor([[0.0, 1.0], [2.0, 3.0]])
        out = up(x)
    assert out[0, 0].tolist() == [[0, 0, 0, 1],
                                  [0, 0, 2, 3],
                                  [0, 2, 0, 3],
                                  [4, 6, 6, 9]]


@pytest.mark.parametrize("factor", [2, 3, 4, 8])
def test_transposed_upsampling_initialised_to_bilinear_equals_bilinear(factor):
    torch.manual_seed(0)
    x = torch.randn(2, 3, 5, 7)
    expected = F.interpolate(x, scale_factor=factor, mode="bilinear", align_corners=False)
    torch.testing.assert_close(Upsample("transposed", 3, factor)(x), expected, atol=1e-5, rtol=0)


def test_unpool_needs_indices_and_factor_two():
    with pytest.raises(ConfigError, match="max-pooling indices"):
        Upsample("unpool", 1, 2)(torch.zeros(1, 1, 2, 2))
    with pytest.raises(ConfigError, match="3 steps"):
        Upsample("unpool", 1, 8)
    with pytest.raises(ConfigError, match="one of"):
        Upsample("cubic", 1, 2)


@pytest.mark.parametrize("output_stride", [8, 16])
def test_dilation_keeps_the_output_stride_asked_for(output_stride):
    backbone = build_model({"name": "deeplabv3", "num_classes": 4,
                            "backbone": {"name": "resnet50", "out_features": ["c5"], "output_stride": output_stride},
                            "decoder": {"name": "aspp", "in_feature": "c5", "channels": 32}}).backbone.eval()
    assert backbone.output_shape()["c5"].stride == output_stride
    with torch.no_grad():
        assert backbone(torch.zeros(1, 3, 64, 96))["c5"].shape[-2:] == (64 // output_stride, 96 // output_stride)
    for name, stride in (("resnet50", 4), ("resnet18", 8)):
        with pytest.raises(ConfigError, match=f"'{name}': output_stride {stride} is not available"):
            build_model({"name": "deeplabv3", "num_classes": 4, "backbone": {"name": name, "output_stride": stride},
                         "decoder": {"name": "aspp", "in_feature": "c5"}})


MODELS = {
    "unet": "configs/model/unet_tiny.yaml",
    "fcn32s": "configs/model/fcn32s_tiny.yaml",
    "fcn16s": "configs/model/fcn16s_tiny.yaml",
    "fcn8s": "configs/model/fcn8s_tiny.yaml",
    "fcdensenet56": "configs/model/fcdensenet56.yaml",
}


def tiny_node(model: str):
    """The editable node of ``MODELS[model]`` for background + the shapes' 3 classes (without a
    data set, the config says its class count)."""
    node = load_node(MODELS[model])
    node.num_classes = 4
    return node


CASES = [(m, None) for m in MODELS] + [("fcn8s", k) for k in ("nearest", "bilinear", "unpool")] + \
    [("fcn32s", "unpool"), ("fcn16s", ["unpool", "bilinear"])]


@pytest.mark.parametrize(("model", "upsample"), CASES)
def test_every_model_takes_an_odd_input_size_by_padding(model, upsample):
    torch.manual_seed(0)
    node = tiny_node(model)
    if upsample is not None:
        node.decoder.upsample = upsample
    segmentor = build_model(node)
    sample = DetSample(torch.randint(0, 255, (3, 97, 131), dtype=torch.uint8), 1, (97, 131))
    logits = segmentor.logits([sample])
    stride = segmentor.preprocessor.size_divisibility
    assert logits.shape == (1, 4, -(-97 // stride) * stride, -(-131 // stride) * stride)
    (pred,) = segmentor.eval().predict([sample])
    assert isinstance(pred, SemanticMap) and pred.image_size == (97, 131)
    assert 0 <= int(pred.labels.min()) and int(pred.labels.max()) < 4


def test_deeplabv3_with_aspp_on_a_dilated_resnet():
    segmentor = build_model({"name": "deeplabv3", "num_classes": 3,
                             "backbone": {"name": "resnet50", "out_features": ["c5"], "output_stride": 8},
                             "decoder": {"name": "aspp", "in_feature": "c5", "rates": [12, 24, 36], "channels": 32}})
    sample = DetSample(torch.randint(0, 255, (3, 97, 131), dtype=torch.uint8), 1, (97, 131))
    assert segmentor.eval().predict([sample])[0].image_size == (97, 131)


@pytest.mark.parametrize("decoder", [
    {"name": "fcn_head", "in_feature": "c5"},
    {"name": "aspp", "in_feature": "c5", "channels": 16, "pool_norm": True, "dropout": 0.5},
])
def test_torchvision_style_heads_score_an_unpadded_input(decoder):
    torch.manual_seed(0)
    segmentor = build_model({"name": "deeplabv3", "num_classes": 3, "decoder": decoder, "size_divisibility": 1,
                             "backbone": {"name": "resnet18", "out_features": ["c5"]}})
    sample = DetSample(torch.randint(0, 255, (3, 97, 131), dtype=torch.uint8), 1, (97, 131))
    assert segmentor.preprocessor.size_divisibility == 1
    assert segmentor.logits([sample, sample]).shape == (2, 3, 97, 131)  # training: the pool's BN needs 2 images
    assert segmentor.eval().predict([sample])[0].image_size == (97, 131)
    if decoder["name"] == "aspp":  # torchvision's DeepLabHead: BN in the image-level branch, dropout after fusing
        assert isinstance(segmentor.decoder.image_pool[2], torch.nn.BatchNorm2d)
        assert isinstance(segmentor.decoder.fuse[3], torch.nn.Dropout)
    else:  # torchvision's FCNHead: 3x3 conv (channels / 4, no bias), BN, ReLU, dropout; the head scores it
        assert segmentor.decoder.layers[0].out_channels == 128 and segmentor.decoder.layers[0].bias is None
        assert segmentor.head.in_channels == 128 and segmentor.head.bias is not None


def test_fcn_unpool_needs_an_encoder_with_every_pooling():
    node = tiny_node("fcn8s")
    node.decoder.upsample = "unpool"
    node.backbone.out_features = ["pool3", "pool4", "pool5"]
    with pytest.raises(ConfigError, match=r"strides \[8, 4, 2\]; missing \[4, 2\]"):
        build_model(node)


def test_tiramisu_parameter_counts_are_the_papers():
    # Jegou et al. 2017, table 2: 1.5M, 3.5M and 9.4M parameters
    for depth, millions in ((56, 1.5), (67, 3.5), (103, 9.4)):
        count = sum(p.numel() for p in build_model({"name": "tiramisu", "num_classes": 11, "depth": depth}).parameters())
        assert count / 1e6 == pytest.approx(millions, rel=0.1), depth


def test_sliding_window_equals_whole_image_where_the_window_covers_it():
    torch.manual_seed(0)
    node = tiny_node("fcn8s")
    whole = build_model(node).eval()
    windowed = build_model({**OmegaConf.to_container(node), "window": 128}).eval()
    windowed.load_state_dict(whole.state_dict())
    sample = DetSample(torch.randint(0, 255, (3, 97, 128), dtype=torch.uint8), 1, (97, 128))
    image = whole.preprocessor.normalise(sample.image)[None]
    with torch.no_grad():
        expected = whole.logits([sample])[..., :97, :128]
        torch.testing.assert_close(windowed.sliding_window_logits(image), expected)
    assert torch.equal(windowed.predict([sample])[0].labels, whole.predict([sample])[0].labels)


def test_sliding_window_averages_overlapping_windows():
    node = tiny_node("fcn8s")
    model = build_model({**OmegaConf.to_container(node), "window": 64, "window_stride": 32}).eval()
    calls = []
    original = model.forward_tensor
    model.forward_tensor = lambda x: calls.append(tuple(x.shape[-2:])) or original(x)
    pred = model.predict([DetSample(torch.randint(0, 255, (3, 100, 130), dtype=torch.uint8), 1, (100, 130))])[0]
    assert pred.image_size == (100, 130)
    assert len(calls) == 3 * 4 and set(calls) == {(64, 64)}  # rows 0, 32, 36; columns 0, 32, 64, 66
    with pytest.raises(ConfigError, match="multiple of the encoder's stride 32"):
        build_model({**OmegaConf.to_container(node), "window": 100})


def test_iou_and_dice_agree_with_numpy():
    rng = np.random.default_rng(0)
    target = rng.integers(0, 4, (3, 20, 30))
    pred = np.where(rng.random(target.shape) < 0.7, target, rng.integers(0, 4, target.shape))
    target[0, :2] = 255  # ignored pixels
    metrics = segmentation_metrics(confusion_matrix(torch.from_numpy(pred), torch.from_numpy(target), 4).numpy(),
                                   ["a", "b", "c", "d"])
    valid = target != 255
    for c, name in enumerate("abcd"):
        p, t = (pred == c) & valid, (target == c) & valid
        assert metrics[f"IoU/{name}"] == pytest.approx((p & t).sum() / (p | t).sum())
        assert metrics[f"Dice/{name}"] == pytest.approx(2 * (p & t).sum() / (p.sum() + t.sum()))
    assert metrics["pixel_acc"] == pytest.approx((pred == target)[valid].mean())
