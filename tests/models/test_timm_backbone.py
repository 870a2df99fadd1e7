"""timm backbones: channels and strides from feature_info, weights from a local file or timm's
own (through its caches, never the network here), and a detector built on one."""

import pytest
import torch

import timm  # a dev dependency: missing, the suite fails rather than skips

from detseg.errors import ConfigError
from detseg.models import build_model
from detseg.models.backbones import TimmBackbone
from detseg.structures import DetSample, Instances


@pytest.mark.parametrize("model", ["resnet18d", "mobilenetv3_small_100", "efficientnet_b0"])
def test_features_named_by_stride_with_feature_info_channels(model):
    backbone = TimmBackbone(model).eval()
    info = timm.create_model(model, features_only=True).feature_info
    shape = backbone.output_shape()
    assert [s.channels for s in shape.values()] == info.channels()
    assert [s.stride for s in shape.values()] == info.reduction()
    with torch.no_grad():
        features = backbone(torch.zeros(1, 3, 64, 96))
    for name, f in features.items():
        assert name == f"c{shape[name].stride.bit_length() - 1}"
        assert tuple(f.shape[1:]) == (shape[name].channels, 64 // shape[name].stride, 96 // shape[name].stride)


def test_pretrained_from_a_local_file_equals_the_classification_model(tmp_path):
    torch.manual_seed(0)
    classifier = timm.create_model("resnet18d").eval()
    path = tmp_path / "resnet18d.pth"
    torch.save(classifier.state_dict(), path)
    backbone = TimmBackbone("resnet18d", out_features=["c5"], pretrained=str(path)).eval()
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(backbone(x)["c5"], classifier.forward_features(x))
    with pytest.raises(ConfigError, match=r"missing\.pth.*pretrained: true for timm's own weights"):
        TimmBackbone("resnet18d", pretrained=str(tmp_path / "missing.pth"))
    torch.save(timm.create_model("resnet34d").state_dict(), tmp_path / "r34.pth")
    with pytest.raises(ConfigError, match="does not fit"):
        TimmBackbone("resnet18d", pretrained=str(tmp_path / "r34.pth"))


def test_unknown_model_and_feature_are_named():
    with pytest.raises(ConfigError, match="resnet18dd.*did you mean"):
        TimmBackbone("resnet18dd")
    with pytest.raises(ConfigError, match="c9"):
        TimmBackbone("resnet18d", out_features=["c9"])


def test_faster_rcnn_on_a_timm_backbone_trains_and_predicts():
    cfg = {"name": "faster_rcnn", "backbone": {"name": "timm", "model": "resnet18d", "out_features": ["c3", "c4", "c5"]},
           "neck": {"name": "fpn", "in_features": ["c3", "c4", "c5"], "out_channels": 32},
           "proposal_source": {"name": "rpn", "in_features": ["p3", "p4", "p5"],
                               "anchor_sizes": [[16], [32], [64]], "aspect_ratios": [1.0]},
           "roi_head": {"name": "standard", "in_features": ["p3", "p4", "p5"], "fc_dim": 64}, "num_classes": 2}
    model = build_model(cfg)
    image = torch.randint(0, 255, (3, 64, 64), dtype=torch.uint8)
    gt = Instances(torch.tensor([[8.0, 8.0, 40.0, 40.0]]), torch.tensor([1]), (64, 64))
    losses = model.loss([DetSample(image=image, image_id=1, orig_size=(64, 64), gt=gt)])
    sum(losses.values()).backward()
    assert all(torch.isfinite(v) for v in losses.values())
    model.eval()
    with torch.no_grad():
        assert isinstance(model.predict([DetSample(image=image, image_id=1, orig_size=(64, 64))])[0], Instances)


@pytest.fixture
def empty_caches(tmp_path, monkeypatch):
    """Empty Hugging Face and torch hub caches, and the Hugging Face hub offline (HF_HUB_OFFLINE=1)."""
    import huggingface_hub as hub  # a dependency of timm 1.x
    monkeypatch.setattr(hub.constants, "HF_HUB_CACHE", str(tmp_path / "hf" / "hub"))
    monkeypatch.setattr(hub.constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))

    def no_download(url, dst, *args, **kwargs):
        import urllib.error

        raise urllib.error.URLError("no network")

    monkeypatch.setattr(torch.hub, "download_url_to_file", no_download)
    return {"hf": tmp_path / "hf" / "hub", "torch": tmp_path / "torch" / "hub" / "checkpoints"}


def _assert_body_equals(backbone, reference_state):
    state = backbone.body.state_dict()
    assert state and all(torch.equal(state[k], reference_state[k]) for k in state)


def test_timm_pretrained_weights_from_the_hugging_face_cache(empty_caches):
    """``pretrained: true`` reads the file timm would download, from the hub cache's layout
    (``models--<org>--<repo>/refs/main`` -> ``snapshots/<commit>/model.safetensors``)."""
    from safetensors.torch import save_file

    torch.manual_seed(0)
    reference = timm.create_model("test_resnet").state_dict()
    repo = empty_caches["hf"] / "models--timm--test_resnet.r160_in1k"
    commit = "0123456789abcdef0123456789abcdef01234567"
    (repo / "snapshots" / commit).mkdir(parents=True)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(commit)
    save_file(reference, str(repo / "snapshots" / commit / "model.safetensors"))
    _assert_body_equals(TimmBackbone("test_resnet", pretrained=True), reference)
    with pytest.raises(ConfigError, match=r"unknown pretrained tag in 'test_resnet.r999'.*test_resnet.r160_in1k"):
        TimmBackbone("test_resnet.r999", pretrained=True)


def test_timm_pretrained_weights_from_the_torch_hub_cache(empty_caches):
    """Weights timm also publishes at a URL load from ``$TORCH_HOME/hub/checkpoints/<file name>``."""
    torch.manual_seed(0)
    reference = timm.create_model("resnet10t").state_dict()
    url = timm.models.get_pretrained_cfg("resnet10t").url
    empty_caches["torch"].mkdir(parents=True)
    torch.save(reference, empty_caches["torch"] / url.rsplit("/", 1)[-1])
    _assert_body_equals(TimmBackbone("resnet10t", pretrained=True), reference)


def test_timm_pretrained_offline_names_what_to_download_and_where(empty_caches):
    with pytest.raises(ConfigError) as info:
        TimmBackbone("resnet10t", pretrained=True)
    message = str(info.value)
    url = timm.models.get_pretrained_cfg("resnet10t").url
    for part in ("timm/resnet10t.c3_in1k", "offline mode is enabled",
                 "https://huggingface.co/timm/resnet10t.c3_in1k/resolve/main/model.safetensors",
                 str(empty_caches["hf"]), url, str(empty_caches["torch"] / url.rsplit("/", 1)[-1])):
        assert part in message
    assert "\n" not in message


def test_timm_pretrained_without_network_fails_at_once(tmp_path):
    """The real offline case (no HF_HUB_OFFLINE): one probe, not the hub client's minute of retries."""
    import os
    import subprocess
    import sys
    import time

    proxy = "http://127.0.0.1:9"  # a closed local port
    env = {**os.environ, "HF_HOME": str(tmp_path / "hf"), "TORCH_HOME": str(tmp_path / "torch"),
           "https_proxy": proxy, "HTTPS_PROXY": proxy, "http_proxy": proxy, "HTTP_PROXY": proxy,
           "no_proxy": "", "NO_PROXY": ""}
    env.pop("HF_HUB_OFFLINE", None)
    code = ("from detseg.models.backbones import TimmBackbone\n"
            "TimmBackbone('test_resnet', pretrained=True)\n")
    start = time.monotonic()
    result = subprocess.run([sys.executable, "-c", f"from detseg.cli import run_cli\n"
                             f"def main(argv):\n    exec({code!r})\n    return 0\nrun_cli(main)"],
                            env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 2, result.stderr
    assert result.stderr.startswith("error: cannot get timm's pretrained weights for 'test_resnet'")
    assert "Traceback" not in result.stderr and "Retrying" not in result.stderr
    assert str(tmp_path / "hf" / "hub") in result.stderr
    assert time.monotonic() - start < 30  # ~5 s, mostly imports; hub retries would take ~45 s
