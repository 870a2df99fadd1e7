"""Named pretrained backbones: torchvision weights by name through the torch hub cache, timm's
own weights through its caches, and one clear error line offline. Nothing here touches the
network: files are placed in temporary caches, downloads are made to fail."""

import os
import subprocess
import sys
import time
import urllib.error
from pathlib import Path

import pytest
import torch
import torchvision

import detseg.models  # noqa: F401 - registers backbones
from detseg.config import build
from detseg.errors import ConfigError
from detseg.models.backbones.base import load_pretrained
from detseg.models.backbones.torchvision_models import RESNET_STAGES
from detseg.registry import BACKBONES
from detseg.zoo.weights import hub_cache_file, torchvision_weights

ROOT = Path(__file__).resolve().parents[2]
R18_V1 = torchvision.models.ResNet18_Weights.IMAGENET1K_V1
NO_NETWORK = {"https_proxy": "http://127.0.0.1:9", "HTTPS_PROXY": "http://127.0.0.1:9",
              "http_proxy": "http://127.0.0.1:9", "HTTP_PROXY": "http://127.0.0.1:9",
              "no_proxy": "", "NO_PROXY": ""}
"""A closed local port as the proxy: every download in a subprocess fails at once."""


@pytest.fixture
def torch_home(tmp_path, monkeypatch):
    """An empty torch hub cache in which any download fails."""
    home = tmp_path / "torch_home"
    monkeypatch.setenv("TORCH_HOME", str(home))

    def no_download(url, dst, *args, **kwargs):
        raise urllib.error.URLError("no network")

    monkeypatch.setattr(torch.hub, "download_url_to_file", no_download)
    return home


def _assert_stages_equal(backbone, reference):
    for name, paths in RESNET_STAGES.items():
        for module, path in zip(backbone.stages[name], paths):
            ours, theirs = module.state_dict(), reference.get_submodule(path).state_dict()
            assert list(ours) == list(theirs)
            assert all(torch.equal(ours[k], theirs[k]) for k in ours), path


def test_torchvision_weights_by_name_come_from_the_torch_hub_cache(torch_home):
    torch.manual_seed(0)
    reference = torchvision.models.resnet18(weights=None)
    file = torch_home / "hub" / "checkpoints" / os.path.basename(R18_V1.url)
    assert hub_cache_file(R18_V1.url) == file
    file.parent.mkdir(parents=True)
    torch.save(reference.state_dict(), file)
    for name in ("imagenet", "IMAGENET1K_V1"):
        _assert_stages_equal(build({"name": "resnet18", "pretrained": name}, BACKBONES, "backbone"), reference)
    for name in ("DEFAULT", "imagenet1k_v1", "ResNet18_Weights.IMAGENET1K_V1", True):  # other spellings
        model = torchvision.models.resnet18(weights=None)
        load_pretrained(model, name, "resnet18")
        assert all(torch.equal(a, b) for a, b in zip(model.state_dict().values(), reference.state_dict().values()))


def test_a_failed_download_names_the_url_and_the_cache_path(torch_home):
    file = torch_home / "hub" / "checkpoints" / os.path.basename(R18_V1.url)
    with pytest.raises(ConfigError) as info:
        build({"name": "resnet18", "pretrained": "imagenet"}, BACKBONES, "backbone")
    message = str(info.value)
    assert R18_V1.url in message and str(file) in message and file.name in message
    assert "no network" in message and "\n" not in message
    assert not file.exists()


def test_an_unknown_weights_name_lists_the_valid_ones():
    with pytest.raises(ConfigError) as info:
        build({"name": "resnet18", "pretrained": "IMAGENET1K_V2"}, BACKBONES, "backbone")
    assert "did you mean" in str(info.value)
    assert "imagenet, DEFAULT, IMAGENET1K_V1 (ResNet18_Weights; DEFAULT is IMAGENET1K_V1)" in str(info.value)
    with pytest.raises(ConfigError, match="imagenet, DEFAULT, IMAGENET1K_V1, IMAGENET1K_V2 "):
        torchvision_weights("resnet50", "IMAGENET1K_V3")
    with pytest.raises(ConfigError, match="IMAGENET1K_V1, IMAGENET1K_FEATURES"):
        torchvision_weights("vgg16", "imagenet21k")
    with pytest.raises(ConfigError, match="no published weights for 'tiny_convnet'"):
        torchvision_weights("tiny_convnet", "imagenet")


@pytest.mark.parametrize("arch", ["resnet18", "resnet34", "resnet50", "resnet101", "vgg16", "vgg16_bn",
                                  "mobilenet_v3_large"])
def test_every_torchvision_backbone_has_imagenet_weights(arch):
    weights = torchvision_weights(arch, "imagenet")
    assert weights is torchvision.models.get_model_weights(arch).DEFAULT and weights.url.endswith(".pth")
    assert torchvision_weights(arch, "imagenet1k_v1").name == "IMAGENET1K_V1"


def test_train_cli_offline_prints_one_error_line(tmp_path):
    """tools/train.py with named weights, an empty cache and no network: exit 2 at model build."""
    env = {**os.environ, **NO_NETWORK, "TORCH_HOME": str(tmp_path / "torch_home")}
    start = time.monotonic()
    result = subprocess.run(
        [sys.executable, "tools/train.py", "configs/faster_rcnn/shapes.yaml", "~model.backbone",
         "+model.backbone={name: resnet18, out_features: [c3, c4, c5], pretrained: imagenet}",
         f"output_dir={tmp_path / 'run'}", "--dry-run"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    elapsed = time.monotonic() - start
    assert result.returncode == 2, result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "Traceback" not in result.stderr, result.stderr
    cached = tmp_path / "torch_home" / "hub" / "checkpoints" / os.path.basename(R18_V1.url)
    assert R18_V1.url in errors[0] and str(cached) in errors[0]
    assert elapsed < 30, f"took {elapsed:.1f} s: the failing download should fail at once"  # ~4 s, mostly imports
