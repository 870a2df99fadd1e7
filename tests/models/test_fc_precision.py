"""roi_head.fc_precision: the box head's layers in bf16 in training where asked (or where the
CPU has bf16 units, for ``auto``), fp32 otherwise and always at inference."""

import copy

import pytest
import torch

from detseg.models import build_model
from detseg.models.heads import roi_heads
from detseg.ops.cpu_features import bf16_units, cpu_flags
from detseg.structures import Boxes, DetSample, Instances
from tests.models.test_faster_rcnn import TINY


def samples():
    g = torch.Generator().manual_seed(0)
    image = torch.randint(0, 255, (3, 64, 64), generator=g, dtype=torch.uint8)
    gt = Instances(Boxes(torch.tensor([[10.0, 12.0, 40.0, 44.0]])), torch.tensor([2]), (64, 64))
    return [DetSample(image=image, image_id=1, orig_size=(64, 64), gt=gt)]


def model_with(precision):
    cfg = copy.deepcopy(TINY)
    cfg["roi_head"]["fc_precision"] = precision
    torch.manual_seed(0)
    return build_model(cfg)


def fc1_dtypes(model, run):
    """The dtypes of the box head's first layer output during ``run()``."""
    seen = []
    handle = model.roi_head.box_head.fc1.register_forward_hook(lambda m, i, o: seen.append(o.dtype))
    run()
    handle.remove()
    return seen


@pytest.mark.parametrize("precision,units,expected", [
    ("fp32", ["avx512_bf16"], torch.float32),
    ("bf16", [], torch.bfloat16),
    ("auto", ["avx512_bf16"], torch.bfloat16),
    ("auto", [], torch.float32),
])
def test_training_precision_and_fp32_inference(monkeypatch, precision, units, expected):
    monkeypatch.setattr(roi_heads, "bf16_units", lambda: units)  # the CPU's capabilities, faked both ways
    model = model_with(precision)
    model.train()
    losses = {}
    assert fc1_dtypes(model, lambda: losses.update(model.loss(samples()))) == [expected]
    assert all(v.dtype == torch.float32 and torch.isfinite(v) for v in losses.values())
    sum(losses.values()).backward()
    assert model.roi_head.box_head.fc1.weight.grad.dtype == torch.float32  # fp32 weights and gradients
    model.eval()
    with torch.no_grad():
        assert fc1_dtypes(model, lambda: model.predict(samples())) == [torch.float32]


def test_bf16_losses_close_to_fp32():
    fp32, bf16 = model_with("fp32"), model_with("bf16")
    bf16.load_state_dict(fp32.state_dict())
    torch.manual_seed(1)
    a = fp32.loss(samples())
    torch.manual_seed(1)
    b = bf16.loss(samples())
    assert torch.equal(a["loss_rpn_cls"], b["loss_rpn_cls"])  # the RPN is untouched
    for key in ("loss_cls", "loss_box"):
        assert abs(a[key].item() - b[key].item()) <= 0.02 * abs(a[key].item()) + 1e-4, key


def test_bf16_units_from_the_cpu_flags(tmp_path):
    assert bf16_units(frozenset({"avx2", "avx512f"})) == []
    expected = ["amx_bf16", "avx512_bf16"] if torch.backends.mkldnn.is_available() else []
    assert bf16_units(frozenset({"avx512_bf16", "amx_bf16", "avx2"})) == expected
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text("processor\t: 0\nmodel name\t: Test CPU\nflags\t\t: fpu avx2 avx512_bf16\n\n"
                       "processor\t: 1\nflags\t\t: fpu\n")
    assert cpu_flags(str(cpuinfo)) == frozenset({"fpu", "avx2", "avx512_bf16"})
    assert cpu_flags(str(tmp_path / "missing")) == frozenset()


def test_an_unknown_precision_is_refused():
    cfg = copy.deepcopy(TINY)
    cfg["roi_head"]["fc_precision"] = "fp16"
    with pytest.raises(Exception, match="fc_precision"):
        build_model(cfg)
