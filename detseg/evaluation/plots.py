"""Evaluation report: PNG plots (matplotlib) and a one-page ``report.html``.

Detection (from COCO ground truth and COCO results, original image coordinates):
precision-recall curves per class at IoU 0.5 and 0.75 (COCOeval's 101-point curves, all
areas, 100 detections), the detection confusion matrix
(:class:`~detseg.evaluation.confusion.DetectionConfusionMatrix`, background row/column),
and per-class AP bars. Segmentation (from the pixel confusion matrix): the confusion
matrix, normalised per ground-truth row, and per-class IoU bars.
"""

from __future__ import annotations

import contextlib
import html
import io
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from detseg.evaluation.base import nest_per_class
from detseg.evaluation.confusion import DetectionConfusionMatrix
from detseg.structures import Boxes, Instances

PR_IOUS = (0.5, 0.75)


def _figure(width: float = 6.0, height: float = 4.5):
    from matplotlib.figure import Figure  # the object API: no pyplot, no global state, no display

    return Figure(figsize=(width, height), dpi=100, layout="constrained")


def pr_curves(ground_truth: dict[str, Any], results: Sequence[dict[str, Any]],
              iou_type: str = "bbox") -> dict[float, np.ndarray]:
    """``{iou: float[101, K]}``: COCOeval's interpolated precision at recall 0, 0.01, .., 1
    per category (in ``ground_truth['categories']`` id order); -1 where undefined."""
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    gt = {k: ground_truth[k] for k in ("images", "categories")}
    gt["annotations"] = [dict(a) for a in ground_truth["annotations"]]
    with contextlib.redirect_stdout(io.StringIO()):
        gt_api = COCO()
        gt_api.dataset = gt
        gt_api.createIndex()
        evaluator = COCOeval(gt_api, gt_api.loadRes([dict(r) for r in results]), iou_type)
        evaluator.evaluate()
        evaluator.accumulate()
    precision = np.asarray(evaluator.eval["precision"])  # [IoU, recall, class, area, maxDets]
    ious = np.asarray(evaluator.params.iouThrs)
    return {iou: precision[int(np.argmin(np.abs(ious - iou))), :, :, 0, -1] for iou in PR_IOUS}


def detection_confusion(ground_truth: dict[str, Any], results: Sequence[dict[str, Any]],
                        iou_threshold: float = 0.5, score_threshold: float = 0.5) -> np.ndarray:
    """``int64[C+1, C+1]`` from COCO dicts (rows ground truth, columns predictions)."""
    category_ids = sorted(c["id"] for c in ground_truth["categories"])
    label = {cid: i for i, cid in enumerate(category_ids)}
    matrix = DetectionConfusionMatrix(len(category_ids), iou_threshold, score_threshold)
    gt_by_image: dict[Any, list] = {im["id"]: [] for im in ground_truth["images"]}
    for ann in ground_truth["annotations"]:
        gt_by_image[ann["image_id"]].append(ann)
    pred_by_image: dict[Any, list] = {image_id: [] for image_id in gt_by_image}
    for result in results:
        pred_by_image.setdefault(result["image_id"], []).append(result)

    def instances(items, crowd: bool | None, scored: bool) -> Instances:
        items = [a for a in items if crowd is None or bool(a.get("iscrowd", 0)) == crowd]
        xywh = torch.tensor([a["bbox"] for a in items], dtype=torch.float32).reshape(-1, 4)
        xyxy = torch.cat([xywh[:, :2], xywh[:, :2] + xywh[:, 2:]], 1)
        return Instances(Boxes(xyxy), [label[a["category_id"]] for a in items], (0, 0),
                         scores=[a["score"] for a in items] if scored else None)

    for image_id, anns in gt_by_image.items():
        matrix.update([instances(pred_by_image[image_id], None, True)], [instances(anns, False, False)],
                      [instances(anns, True, False)])
    return matrix.local_counts()  # results already gathered: no collective here


def plot_pr_curves(precision: np.ndarray, class_names: Sequence[str], iou: float, path: Path) -> None:
    fig = _figure()
    ax = fig.add_subplot()
    recall = np.linspace(0, 1, precision.shape[0])
    for k, name in enumerate(class_names):
        curve = precision[:, k]
        if (curve > -1).any():
            ap = curve[curve > -1].mean()
            ax.plot(recall, np.where(curve > -1, curve, np.nan), label=f"{name} (AP {ap:.3f})")
    ax.set(xlabel="recall", ylabel="precision", xlim=(0, 1), ylim=(0, 1.02),
           title=f"Precision-recall per class, IoU {iou:g}")
    ax.grid(alpha=0.3)
    ax.legend(loc="lower left", fontsize="small")
    fig.savefig(path)


def plot_confusion(matrix: np.ndarray, labels: Sequence[str], path: Path, title: str,
                   normalise_rows: bool = False) -> None:
    fig = _figure(1.6 + 0.6 * len(labels), 1.2 + 0.55 * len(labels))
    ax = fig.add_subplot()
    shown = matrix.astype(float)
    if normalise_rows:
        shown = shown / np.maximum(shown.sum(1, keepdims=True), 1)
    image = ax.imshow(shown, cmap="Blues")
    fig.colorbar(image, ax=ax, shrink=0.8)
    ticks = range(len(labels))
    ax.set_xticks(ticks, labels, rotation=45, ha="right")
    ax.set_yticks(ticks, labels)
    ax.set(xlabel="predicted", ylabel="ground truth", title=title)
    threshold = shown.max() / 2 if shown.size else 0
    for (i, j), value in np.ndenumerate(shown):
        text = f"{value:.2f}" if normalise_rows else str(int(value))
        ax.text(j, i, text, ha="center", va="center", fontsize="small",
                color="white" if value > threshold else "black")
    fig.savefig(path)


def plot_bars(values: dict[str, float], path: Path, title: str, xlabel: str) -> None:
    fig = _figure(6.0, 1.2 + 0.35 * len(values))
    ax = fig.add_subplot()
    names = list(values)
    numbers = [0.0 if math.isnan(v) else v for v in values.values()]
    bars = ax.barh(names, numbers, color="tab:blue")
    ax.bar_label(bars, labels=["n/a" if math.isnan(v) else f"{v:.3f}" for v in values.values()], padding=2)
    ax.invert_yaxis()
    ax.set(xlim=(0, 1.1), xlabel=xlabel, title=title)
    fig.savefig(path)


def write_detection_report(out: str | Path, metrics: dict[str, float], ground_truth: dict[str, Any],
                           results: Sequence[dict[str, Any]], title: str, iou_type: str = "bbox",
                           links: Sequence[tuple[str, str]] = ()) -> Path:
    """The plots and ``report.html`` in ``out``; returns the HTML path. ``links``:
    ``(href, text)`` of other pages (the gallery)."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    categories = sorted(ground_truth["categories"], key=lambda c: c["id"])
    names = [str(c.get("name", c["id"])) for c in categories]
    figures = []
    if results:
        for iou, precision in pr_curves(ground_truth, results, iou_type).items():
            name = f"pr_iou{round(iou * 100)}.png"
            plot_pr_curves(precision, names, iou, out / name)
            figures.append((name, f"Precision-recall per class at IoU {iou:g}"))
    matrix = detection_confusion(ground_truth, results)
    plot_confusion(matrix, [*names, "background"], out / "confusion_matrix.png",
                   "Detection confusion (IoU 0.5, score 0.5)")
    figures.append(("confusion_matrix.png", ("Detection confusion matrix: rows ground truth, columns predictions, "
                                             "background = missed / false positive (IoU 0.5, score >= 0.5)")))
    per_class = nest_per_class(metrics).get("per_class", {})
    plot_bars({n: per_class.get(n, {}).get("AP", math.nan) for n in names}, out / "ap_per_class.png",
              "AP per class (COCO, IoU 0.5:0.95)", "AP")
    figures.append(("ap_per_class.png", "AP per class"))
    return _write_html(out, title, metrics, figures, links)


def write_segmentation_report(out: str | Path, metrics: dict[str, float], matrix: np.ndarray,
                              class_names: Sequence[str], title: str, links: Sequence[tuple[str, str]] = ()) -> Path:
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    plot_confusion(matrix, class_names, out / "confusion_matrix.png", "Pixel confusion (row-normalised)",
                   normalise_rows=True)
    per_class = nest_per_class(metrics).get("per_class", {})
    plot_bars({n: per_class.get(n, {}).get("IoU", math.nan) for n in class_names}, out / "iou_per_class.png",
              "IoU per class", "IoU")
    figures = [("confusion_matrix.png", "Pixel confusion matrix, each ground-truth row divided by its pixels"),
               ("iou_per_class.png", "IoU per class")]
    return _write_html(out, title, metrics, figures, links)


def _write_html(out: Path, title: str, metrics: dict[str, float], figures: list[tuple[str, str]],
                links: Sequence[tuple[str, str]] = ()) -> Path:
    nested = nest_per_class(metrics)
    per_class = nested.pop("per_class", {})

    def cell(value: Any) -> str:
        if isinstance(value, float):
            return "n/a" if math.isnan(value) else f"{value:.4f}"
        return html.escape(str(value))

    overall = "".join(f"<tr><th>{html.escape(k)}</th><td>{cell(v)}</td></tr>" for k, v in nested.items())
    columns = list(dict.fromkeys(m for values in per_class.values() for m in values))
    class_rows = "".join(
        f"<tr><th>{html.escape(name)}</th>" + "".join(f"<td>{cell(values.get(c, math.nan))}</td>" for c in columns)
        + "</tr>" for name, values in per_class.items())
    class_table = ("<h2>Per class</h2><table><tr><th>class</th>"
                   + "".join(f"<th>{html.escape(c)}</th>" for c in columns) + f"</tr>{class_rows}</table>"
                   if per_class else "")
    pages = "".join(f'<p><a href="{html.escape(href)}">{html.escape(text)}</a></p>' for href, text in links)
    images = "".join(f'<figure><img src="{html.escape(name)}" alt="{html.escape(caption)}">'
                     f"<figcaption>{html.escape(caption)}</figcaption></figure>" for name, caption in figures)
    page = f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>{html.escape(title)}</title>
<link rel="icon" href="data:,">
<style>body{{font-family:sans-serif;margin:2em;max-width:1100px}}table{{border-collapse:collapse;margin-bottom:1em}}
th,td{{border:1px solid #ccc;padding:3px 8px;text-align:right}}th{{background:#f4f4f4}}
figure{{display:inline-block;margin:0 1em 1em 0;vertical-align:top}}img{{max-width:520px}}</style></head>
<body><h1>{html.escape(title)}</h1>{pages}
<h2>Metrics</h2><table>{overall}</table>
{class_table}
<h2>Plots</h2>{images}
</body></html>
"""
    path = out / "report.html"
    path.write_text(page)
    return path


def write_evaluation_report(evaluator: Any, metrics: dict[str, float], out: str | Path, title: str) -> Path | None:
    """The report of a finished evaluation from the evaluator's state: a results evaluator
    (COCO / VOC; PR curves are COCOeval's) or a segmentation evaluator. Collective in a
    distributed run; rank 0 writes and gets the HTML path, the others ``None``. With a
    data set to draw, ``gallery.html`` beside it shows the worst images
    (:mod:`detseg.evaluation.gallery`)."""
    from detseg.engine.distributed import is_main_process
    from detseg.evaluation.base import gather
    from detseg.evaluation.gallery import write_evaluation_gallery
    from detseg.evaluation.segmentation import SegmentationEvaluator

    if isinstance(evaluator, SegmentationEvaluator):
        matrix = sum(gather([evaluator.matrix.numpy()]))
        worst = evaluator.worst.gathered()
        if is_main_process():
            gallery = write_evaluation_gallery(evaluator, out, worst_images=worst)
            return write_segmentation_report(out, metrics, matrix, evaluator.class_names, title, _links(gallery))
        return None
    if not hasattr(evaluator, "gathered_results"):
        raise TypeError(f"no report for a {type(evaluator).__name__}")
    results = evaluator.gathered_results()
    if not is_main_process():
        return None
    iou_type = "segm" if evaluator.iou_type == "segm" else "bbox"
    gallery = write_evaluation_gallery(evaluator, out, results=results)
    return write_detection_report(out, metrics, evaluator.ground_truth, results, title, iou_type, _links(gallery))


def _links(gallery: Path | None) -> list[tuple[str, str]]:
    return [(gallery.name, "Worst images: a gallery of the errors, with a filter by class and kind")] if gallery else []
