import torch

from detseg.data import ShapesDataset
from detseg.models import build_model

UNET = {"name": "unet", "backbone": {"name": "tiny_convnet", "widths": [8, 16, 32], "out_features": ["c1", "c2", "c3"]},
        "decoder": {"name": "unet", "channels": [16, 8]}, "num_classes": 4, "dice_weight": 0.5}


def test_two_iterations_train_and_predict_at_original_size():
    torch.manual_seed(0)
    model = build_model(UNET)
    samples = [ShapesDataset(num_images=2, image_size=48)[i] for i in range(2)]
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01)
    for _ in range(2):
        losses = model.loss(samples)
        assert set(losses) == {"loss_seg", "loss_dice"} and all(v.item() > 0 for v in losses.values())
        optimizer.zero_grad()
        sum(losses.values()).backward()
        optimizer.step()
    maps = model.eval().predict(samples)
    assert [m.image_size for m in maps] == [(48, 48), (48, 48)] and maps[0].labels.dtype == torch.int64


def test_overfits_one_image():
    torch.manual_seed(0)
    model = build_model({**UNET, "dice_weight": 0.0})
    sample = ShapesDataset(num_images=1, image_size=48, seed=2)[0]
    optimizer = torch.optim.Adam(model.parameters(), lr=0.01)
    for _ in range(120):
        loss = model.loss([sample])["loss_seg"]
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    (pred,) = model.eval().predict([sample])
    assert (pred.labels == sample.gt_sem_seg).float().mean() > 0.95
