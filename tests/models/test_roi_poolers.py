import torch

from detseg.models.heads.region_features import RoIPooler
from tests.ops.test_ops import random_boxes, roi_pool_brute


def test_spp_concatenates_max_pooled_pyramid_levels_like_brute_force():
    g = torch.Generator().manual_seed(0)
    features = torch.randn(2, 3, 12, 16, generator=g)
    boxes = [random_boxes(3, 1, size=90.0), random_boxes(2, 2, size=90.0)]
    pooler = RoIPooler([8], kind="spp", spp_levels=(1, 2, 4))
    out = pooler([features], boxes)
    assert out.shape == (5, 3 * (1 + 4 + 16), 1, 1) and pooler.output_size_of(3) == 63
    k = 0
    for image, image_boxes in enumerate(boxes):
        for box in image_boxes:
            expected = torch.cat([roi_pool_brute(features[image], box, level, 1 / 8).flatten()
                                  for level in (1, 2, 4)])
            assert torch.allclose(out[k, :, 0, 0], expected)
            k += 1


def test_multi_level_pooling_assigns_boxes_by_size_and_keeps_their_order():
    maps = [torch.randn(1, 2, 32, 32), torch.randn(1, 2, 16, 16)]  # strides 4 and 8 = levels 2, 3
    pooler = RoIPooler([4, 8], output_size=2, kind="roi_pool", canonical_size=32, canonical_level=3)
    small, large = torch.tensor([[0.0, 0, 8, 8]]), torch.tensor([[0.0, 0, 64, 64]])
    out = pooler(maps, [torch.cat([large, small])])
    assert torch.equal(out[0], RoIPooler([8], 2, "roi_pool")([maps[1]], [large])[0])
    assert torch.equal(out[1], RoIPooler([4], 2, "roi_pool")([maps[0]], [small])[0])
