"""Synthetic COCO ground truth and detections with known properties.

Used by the demo (results made from ground truth with controlled errors), the tests
(random ground truth with crowd regions and empty images) and ``bench/eval_speed.py``.
"""

from __future__ import annotations

from typing import Any

import numpy as np


def random_coco_ground_truth(
    num_images: int,
    num_classes: int,
    max_objects: int = 10,
    image_size: tuple[int, int] = (480, 640),
    crowd_fraction: float = 0.05,
    empty_fraction: float = 0.1,
    seed: int = 0,
) -> dict[str, Any]:
    """A COCO instances dict with random boxes, some ``iscrowd`` and some empty images.

    Category ids are sparse (``2, 4, 6, ...``) to exercise id mapping.
    """
    rng = np.random.default_rng(seed)
    height, width = image_size
    images, annotations = [], []
    for image_id in range(1, num_images + 1):
        images.append({"id": image_id, "file_name": f"{image_id:06d}.jpg", "height": height,
                       "width": width})
        if rng.random() < empty_fraction:
            continue
        for _ in range(int(rng.integers(1, max_objects + 1))):
            w = float(rng.uniform(4, width / 2))
            h = float(rng.uniform(4, height / 2))
            x = float(rng.uniform(0, width - w))
            y = float(rng.uniform(0, height - h))
            annotations.append({
                "id": len(annotations) + 1, "image_id": image_id,
                "category_id": 2 * int(rng.integers(1, num_classes + 1)),
                "bbox": [x, y, w, h], "area": w * h,
                "iscrowd": int(rng.random() < crowd_fraction),
            })
    categories = [{"id": 2 * k, "name": f"class{2 * k}"} for k in range(1, num_classes + 1)]
    return {"images": images, "annotations": annotations, "categories": categories}


def results_from_ground_truth(
    ground_truth: dict[str, Any],
    jitter: float = 0.0,
    drop: float = 0.0,
    false_positives: float = 0.0,
    seed: int = 0,
) -> list[dict[str, Any]]:
    """COCO bbox results made from the ground truth, with controlled mistakes.

    Args:
        jitter: each box edge moves by ``N(0, jitter * side length)``; 0 keeps boxes exact.
        drop: fraction of (non-crowd) objects left undetected.
        false_positives: per object, the expected number of extra random boxes (random
            class, lower scores).
        seed: random stream.

    With all three at 0, every AP computed from the results is 1.0.
    """
    rng = np.random.default_rng(seed)
    sizes = {im["id"]: (im["height"], im["width"]) for im in ground_truth["images"]}
    category_ids = [c["id"] for c in ground_truth["categories"]]
    results = []
    for ann in ground_truth["annotations"]:
        if ann.get("iscrowd", 0) or rng.random() < drop:
            continue
        x, y, w, h = ann["bbox"]
        if jitter > 0:
            dx1, dx2 = rng.normal(0, jitter * w, 2)
            dy1, dy2 = rng.normal(0, jitter * h, 2)
            x1, y1 = x + dx1, y + dy1
            x2, y2 = max(x + w + dx2, x1 + 1), max(y + h + dy2, y1 + 1)
            x, y, w, h = x1, y1, x2 - x1, y2 - y1
        results.append({"image_id": ann["image_id"], "category_id": ann["category_id"],
                        "bbox": [float(x), float(y), float(w), float(h)],
                        "score": float(rng.uniform(0.5, 1.0))})
        for _ in range(int(rng.poisson(false_positives))):
            height, width = sizes[ann["image_id"]]
            fw, fh = rng.uniform(4, width / 3), rng.uniform(4, height / 3)
            results.append({"image_id": ann["image_id"],
                            "category_id": int(rng.choice(category_ids)),
                            "bbox": [float(rng.uniform(0, width - fw)), float(rng.uniform(0, height - fh)),
                                     float(fw), float(fh)],
                            "score": float(rng.uniform(0.0, 0.6))})
    return results


def random_detections(
    ground_truth: dict[str, Any], per_image: int, seed: int = 0
) -> list[dict[str, Any]]:
    """``per_image`` detections per image: half near ground-truth boxes, half random."""
    rng = np.random.default_rng(seed)
    by_image: dict[int, list] = {}
    for ann in ground_truth["annotations"]:
        by_image.setdefault(ann["image_id"], []).append(ann)
    category_ids = np.array([c["id"] for c in ground_truth["categories"]])
    results = []
    for im in ground_truth["images"]:
        height, width = im["height"], im["width"]
        anns = by_image.get(im["id"], [])
        for k in range(per_image):
            if anns and k % 2 == 0:
                ann = anns[int(rng.integers(len(anns)))]
                x, y, w, h = ann["bbox"]
                x, y = x + rng.normal(0, 0.1 * w), y + rng.normal(0, 0.1 * h)
                w, h = w * rng.uniform(0.8, 1.25), h * rng.uniform(0.8, 1.25)
                category = ann["category_id"] if rng.random() < 0.8 else int(rng.choice(category_ids))
            else:
                w, h = rng.uniform(4, width / 2), rng.uniform(4, height / 2)
                x, y = rng.uniform(0, width - w), rng.uniform(0, height - h)
                category = int(rng.choice(category_ids))
            results.append({"image_id": im["id"], "category_id": int(category),
                            "bbox": [float(x), float(y), float(w), float(h)],
                            "score": float(rng.random())})
    return results
