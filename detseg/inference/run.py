"""Predict on image files and write pictures + a results file (library side of tools/infer.py)."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np

from detseg.data.formats import IMAGE_SUFFIXES
from detseg.data.io import read_image, write_label_map
from detseg.errors import DataError
from detseg.inference.predictor import Predictor
from detseg.inference.visualize import draw_instances, draw_label_map


def collect_images(inputs: list[str]) -> list[Path]:
    """Image files named directly or found (non-recursively) in named folders."""
    paths: list[Path] = []
    for item in inputs:
        path = Path(item)
        if path.is_dir():
            found = sorted(p for p in path.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
            if not found:
                raise DataError(f"no images ({', '.join(IMAGE_SUFFIXES)}) in folder {path}")
            paths.extend(found)
        elif path.is_file():
            paths.append(path)
        else:
            raise DataError(f"image not found: {path}")
    if not paths:
        raise DataError("no images given")
    return paths


def predict_files(predictor: Predictor, inputs: list[str], out_dir: str | Path,
                  score_threshold: float = 0.5, batch_size: int = 8) -> Path:
    """Write ``<stem>.jpg`` drawings and ``predictions.json`` (COCO results in original
    pixel coordinates, ``image_id`` = file stem, ``category_id`` = label index; label-map
    PNGs ``<stem>.png`` for segmentation). Returns ``out_dir``."""
    out_dir = Path(out_dir)
    if out_dir.exists() and not out_dir.is_dir():
        raise DataError(f"output folder {out_dir} is a file; give a folder for the pictures and predictions.json")
    if batch_size < 1:
        raise DataError(f"batch size must be at least 1, got {batch_size}")
    paths = collect_images(inputs)
    out_dir.mkdir(parents=True, exist_ok=True)
    results = []
    for start in range(0, len(paths), batch_size):
        chunk = paths[start:start + batch_size]
        images = [read_image(p) for p in chunk]
        for path, image, pred in zip(chunk, images, predictor.predict_batch(images, batch_size)):
            if predictor.segments:
                write_label_map(out_dir / f"{path.stem}.png", pred.labels.numpy().astype(np.uint8))
                drawn = draw_label_map(image, pred.labels)
            else:
                keep = pred[pred.scores >= score_threshold]
                for box, label, score in zip(keep.boxes.xywh().tolist(), keep.labels.tolist(), keep.scores.tolist()):
                    results.append({"image_id": path.stem, "file_name": path.name, "category_id": label,
                                    "category_name": _name(predictor, label),
                                    "bbox": [round(v, 2) for v in box], "score": round(score, 4)})
                drawn = draw_instances(image, keep, predictor.class_names)
            cv2.imwrite(str(out_dir / f"{path.stem}.jpg"), cv2.cvtColor(drawn, cv2.COLOR_RGB2BGR))
    if not predictor.segments:
        (out_dir / "predictions.json").write_text(json.dumps(results, indent=1))
    return out_dir


def _name(predictor: Predictor, label: int) -> str:
    return predictor.class_names[label] if label < len(predictor.class_names) else str(label)
