"""Drawing predictions on images (boxes, labels, scores, masks, label maps)."""

from __future__ import annotations

from collections.abc import Sequence

import cv2
import numpy as np
from torch import Tensor

from detseg.structures import Instances


def palette(n: int) -> np.ndarray:
    """``uint8[n, 3]`` distinct, stable RGB colours (golden-ratio hues)."""
    hues = (np.arange(n) * 0.618033988749895) % 1.0
    hsv = np.stack([hues * 179, np.full(n, 200), np.full(n, 255)], 1).astype(np.uint8)[None]
    return cv2.cvtColor(hsv, cv2.COLOR_HSV2RGB)[0]


def draw_instances(image: np.ndarray, instances: Instances, class_names: Sequence[str],
                   score_threshold: float = 0.0) -> np.ndarray:
    """A copy of ``image`` (``uint8[H, W, 3]`` RGB) with boxes, ``label score`` text and
    mask overlays of the instances scoring at least ``score_threshold``."""
    out = image.copy()
    colours = palette(max(len(class_names), 1))
    keep = instances.scores >= score_threshold if instances.scores is not None else slice(None)
    instances = instances[keep]
    scale = max(out.shape[:2]) / 640
    thickness = max(1, round(2 * scale))
    if instances.masks is not None:
        for mask, label in zip(instances.masks.numpy(), instances.labels.tolist()):
            out[mask] = (0.5 * out[mask] + 0.5 * colours[label]).astype(np.uint8)
    for i in range(len(instances)):
        x1, y1, x2, y2 = (int(round(v)) for v in instances.boxes.tensor[i].tolist())
        label = int(instances.labels[i])
        colour = tuple(int(c) for c in colours[label])
        cv2.rectangle(out, (x1, y1), (x2, y2), colour, thickness)
        text = class_names[label] if label < len(class_names) else str(label)
        if instances.scores is not None:
            text += f" {float(instances.scores[i]):.2f}"
        font_scale = max(0.3, 0.5 * scale)
        (tw, th), _ = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, font_scale, 1)
        top = max(y1 - th - 3, 0)
        cv2.rectangle(out, (x1, top), (x1 + tw + 2, top + th + 3), colour, -1)
        cv2.putText(out, text, (x1 + 1, top + th + 1), cv2.FONT_HERSHEY_SIMPLEX, font_scale, (0, 0, 0), 1,
                    cv2.LINE_AA)
    return out


def draw_label_map(image: np.ndarray, labels: Tensor | np.ndarray, alpha: float = 0.5) -> np.ndarray:
    """``image`` blended with a colour per class of ``labels`` (``[H, W]``); class 0 stays clear."""
    labels = labels.numpy() if isinstance(labels, Tensor) else labels
    colours = palette(int(labels.max(initial=0)) + 1)
    out = image.copy()
    fg = labels > 0
    out[fg] = ((1 - alpha) * out[fg] + alpha * colours[labels[fg]]).astype(np.uint8)
    return out
