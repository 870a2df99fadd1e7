"""Every CLI answers a user's mistake with one ``error:`` line that names the culprit, and
exit code 2; never a traceback, never silence.

Each case runs a tool as a subprocess on a bad input built in a temporary folder from the
small data sets under ``datasets/`` (copied and corrupted). The subprocesses of all
selected cases start together on a few workers (each pays ~2-3 s of interpreter and torch
start-up), and each case is its own test that waits for its result.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
DATASETS = ROOT / "datasets"
SHAPES = "configs/faster_rcnn/shapes.yaml"
ERROR_LINE = re.compile(r"^error: ")
"""The tools' one error line; argparse's own errors too (``detseg.cli.ArgumentParser``)."""
WORKERS = max(2, min(4, os.cpu_count() or 2))


@dataclass(frozen=True)
class Case:
    """One bad invocation.

    Attributes:
        id: the test id.
        tool: the script under ``tools/``.
        args: its arguments; ``{name}`` is replaced by the path of bad input ``name``.
        culprits: what the error line must name (substrings; ``{name}`` as in ``args``),
            or ``re:<pattern>`` for a regular expression.
    """

    id: str
    tool: str
    args: tuple[str, ...]
    culprits: tuple[str, ...]


def case(id: str, tool: str, args: str, *culprits: str) -> Case:
    """A :class:`Case` whose arguments are written as one space-separated string."""
    return Case(id, tool, tuple(args.split()), culprits)


COCO_TRAIN = ("data=coco data.train.dataset.ann_file={gt_no_images} data.train.dataset.image_dir={images} "
              "data.val.dataset.ann_file={gt} data.val.dataset.image_dir={images}")

CASES = [
    # train
    case("train-batch-size-0", "train", f"{SHAPES} data.train.batch_size=0 --dry-run",
         r"re:data\.train\.batch_size\b.*\b1\b"),  # the key and the allowed range (>= 1)
    case("train-negative-lr", "train", f"{SHAPES} train.optimizer.lr=-1 --dry-run", "train.optimizer.lr"),
    case("train-key-typo", "train", f"{SHAPES} train.max_iter=3 --dry-run", "max_iter", "max_iters"),
    case("train-wrong-type", "train", f"{SHAPES} train.max_iters=many --dry-run", "train.max_iters", "many"),
    case("train-unknown-model", "train", f"{SHAPES} model.name=fasterrcnn --dry-run", "fasterrcnn"),
    case("train-model-group-typo", "train", f"{SHAPES} model=faster_rcnn_tiyn --dry-run",
         "model/faster_rcnn_tiyn", "did you mean 'faster_rcnn_tiny'"),
    case("train-config-is-a-folder", "train", "configs --dry-run", "configs", "folder"),
    case("train-num-classes-in-roi-head", "train", f"{SHAPES} model.roi_head.num_classes=3 --dry-run",
         "model.roi_head", "'num_classes'", "model.num_classes"),
    case("train-annotation-file-without-images", "train", f"{SHAPES} {COCO_TRAIN} --dry-run",
         "gt_no_images.json", "data.train"),
    # eval: ground truth gets the checks training data gets
    case("eval-gt-negative-width", "eval", "--gt {gt_negative_width} --results {results}",
         "gt_negative_width.json", "image 1", "annotation 3", "negative width"),
    case("eval-gt-zero-height", "eval", "--gt {gt_zero_height} --results {results}",
         "gt_zero_height.json", "image 1", "annotation 3", "zero width or height"),
    case("eval-gt-box-outside-image", "eval", "--gt {gt_box_outside} --results {results}",
         "gt_box_outside.json", "image 1", "annotation 3", "outside"),
    case("eval-gt-duplicate-annotation-id", "eval", "--gt {gt_duplicate_annotation_id} --results {results}",
         "gt_duplicate_annotation_id.json", "annotation id 3"),
    case("eval-gt-duplicate-image-id", "eval", "--gt {gt_duplicate_image_id} --results {results}",
         "gt_duplicate_image_id.json", "image id 1"),
    case("eval-gt-annotation-of-missing-image", "eval", "--gt {gt_missing_image} --results {results}",
         "gt_missing_image.json", "annotation 3", "image id 777"),
    case("eval-gt-image-of-0x0", "eval", "--gt {gt_zero_size_image} --results {results}",
         "gt_zero_size_image.json", "image 1", "000001.jpg", "0 x 0"),
    case("eval-gt-voc-negative-box", "eval", "--gt {voc} --split val --results {results}",
         "val_000002.xml", "object 0", "negative width"),
    # eval: results with NaN / infinite numbers
    case("eval-results-nan-score", "eval", "--gt {gt} --results {results_nan_score}",
         "results_nan_score.json", "entry 3", "image_id 1", "score nan"),
    case("eval-results-infinite-box", "eval", "--gt {gt} --results {results_inf_box}",
         "results_inf_box.json", "entry 4", "image_id 1", "inf"),
    case("eval-segmenter-checkpoint-for-detector-config", "eval",
         f"{SHAPES} --checkpoint {{seg_checkpoint}} data.val.dataset.num_images=2", "seg.pt", "unet", "faster_rcnn"),
    # infer
    case("infer-folder-without-images", "infer", "{empty_dir} --checkpoint {det_checkpoint} --out {out}", "no_images"),
    case("infer-empty-image-file", "infer", "{empty_image} --checkpoint {det_checkpoint} --out {out}", "empty.jpg"),
    case("infer-corrupt-image", "infer", "{corrupt_image} --checkpoint {det_checkpoint} --out {out}", "truncated.jpg"),
    case("infer-checkpoint-not-a-torch-file", "infer", "{image} --checkpoint {not_a_checkpoint} --out {out}",
         "not_a_checkpoint.pt"),
    case("infer-checkpoint-is-a-folder", "infer", "{image} --checkpoint {empty_dir} --out {out}",
         "no_images", "folder"),
    # export
    case("export-unknown-format", "export", "--checkpoint {det_checkpoint} --format tflite --out {out}/m.tflite",
         "--format", "tflite"),
    case("export-override-typo", "export",
         "--checkpoint {det_checkpoint} --out {out}/m.onnx --no-check data.val.dataset.num_imagez=2", "num_imagez"),
    case("export-out-is-a-folder", "export", "--checkpoint {det_checkpoint} --out {empty_dir} --no-check",
         "--out", "no_images"),
    # check_data
    case("check-data-missing-voc-root", "check_data", f"{SHAPES} data=voc data.data_root={{missing}} --split val",
         "does_not_exist"),
    case("check-data-unknown-split", "check_data", f"{SHAPES} --split vall", "vall"),
    case("check-data-yolo-yaml-is-a-folder", "check_data",
         f"{SHAPES} data=yolo data.data_root={{yolo_root}} --split val", "shapes_yolo_mini", "folder"),
    # convert
    case("convert-unknown-format", "convert", "--from coco --source {gt} --images {images} --to tfrecord --out {out}",
         "--to", "tfrecord"),
    case("convert-missing-input", "convert", "--from coco --source {missing}.json --images {images} --to yolo "
         "--out {out}", "does_not_exist.json"),
    case("convert-coco-without-images-folder", "convert", "--from coco --source {gt} --to yolo --out {out}",
         "--images"),
    case("convert-negative-box", "convert", "--from coco --source {gt_negative_width} --images {images} --split val "
         "--to voc --out {out}", "gt_negative_width.json", "annotation 3"),
]


def write_bad_inputs(folder: Path) -> dict[str, Path]:
    """The good and bad files the cases name, by name."""
    import torch

    from detseg.config import to_plain
    from detseg.experiment import build_model_for, build_split, load_experiment
    from detseg.models.base import task_name

    paths: dict[str, Path] = {}
    images = folder / "coco" / "val"
    shutil.copytree(DATASETS / "shapes_coco_mini" / "val", images)
    gt = json.loads((DATASETS / "shapes_coco_mini" / "annotations" / "instances_val.json").read_text())
    paths.update(images=images, image=images / "000001.jpg", out=folder / "out", missing=folder / "does_not_exist",
                 yolo_root=DATASETS / "shapes_yolo_mini")

    def variant(name: str, change) -> None:
        data = json.loads(json.dumps(gt))
        change(data)
        paths[name] = folder / f"{name}.json"
        paths[name].write_text(json.dumps(data))

    third = gt["annotations"][2]  # annotation 3, on image 1
    assert third["id"] == 3 and third["image_id"] == 1
    variant("gt", lambda d: None)
    variant("gt_negative_width", lambda d: d["annotations"][2].update(bbox=[10, 10, -5, 4]))
    variant("gt_zero_height", lambda d: d["annotations"][2].update(bbox=[10, 10, 5, 0]))
    variant("gt_box_outside", lambda d: d["annotations"][2].update(bbox=[200, 200, 10, 10]))
    variant("gt_duplicate_annotation_id", lambda d: d["annotations"][3].update(id=3))
    variant("gt_duplicate_image_id", lambda d: d["images"][1].update(id=1))
    variant("gt_missing_image", lambda d: d["annotations"][2].update(image_id=777))
    variant("gt_zero_size_image", lambda d: d["images"][0].update(width=0, height=0))
    variant("gt_no_images", lambda d: d.update(images=[], annotations=[]))

    results = [{"image_id": a["image_id"], "category_id": a["category_id"], "bbox": a["bbox"], "score": 0.9}
               for a in gt["annotations"]]
    for name, index, change in (("results", None, None),
                                ("results_nan_score", 3, lambda r: r.update(score=float("nan"))),
                                ("results_inf_box", 4, lambda r: r["bbox"].__setitem__(0, float("inf")))):
        entries = json.loads(json.dumps(results))
        if change is not None:
            change(entries[index])
        paths[name] = folder / f"{name}.json"
        paths[name].write_text(json.dumps(entries))  # NaN and Infinity as Python's json writes them

    voc = folder / "voc"
    for part in ("Annotations", "ImageSets", "JPEGImages"):
        shutil.copytree(DATASETS / "shapes_voc_mini" / part, voc / part)
    shutil.copy(DATASETS / "shapes_voc_mini" / "class_names.txt", voc)
    xml = voc / "Annotations" / "val_000002.xml"
    xml.write_text(re.sub(r"<xmax>(\d+)</xmax>", r"<xmax>-\1</xmax>", xml.read_text(), count=1))
    paths["voc"] = voc

    bad_images = folder / "bad_images"
    bad_images.mkdir()
    paths["empty_image"] = bad_images / "empty.jpg"
    paths["empty_image"].write_bytes(b"")
    paths["corrupt_image"] = bad_images / "truncated.jpg"
    paths["corrupt_image"].write_bytes((images / "000001.jpg").read_bytes()[:200])
    paths["empty_dir"] = folder / "no_images"
    paths["empty_dir"].mkdir()
    (paths["empty_dir"] / "notes.txt").write_text("not an image\n")
    paths["not_a_checkpoint"] = folder / "not_a_checkpoint.pt"
    paths["not_a_checkpoint"].write_text("this is not a torch file\n")

    for name, config in (("det", SHAPES), ("seg", "configs/unet/shapes.yaml")):  # untrained, as saved by training
        cfg = load_experiment(ROOT / config, ["data.train.dataset.num_images=2", "data.val.dataset.num_images=2"])
        dataset = build_split(cfg, "val")
        model = build_model_for(cfg, dataset, initialize=False)
        paths[f"{name}_checkpoint"] = folder / f"{name}.pt"
        torch.save({"model": model.state_dict(), "config": to_plain(cfg),
                    "meta": {"task": task_name(model), "class_names": dataset.class_names}}, paths[f"{name}_checkpoint"])
    return paths


def run_case(item: Case, paths: dict[str, Path]) -> subprocess.CompletedProcess:
    """Run the case's tool from the repository root, capturing its output."""
    names = {k: str(v) for k, v in paths.items()}
    args = [a.format(**names) for a in item.args]
    return subprocess.run([sys.executable, f"tools/{item.tool}.py", *args], cwd=ROOT, capture_output=True,
                          text=True, timeout=300, env={**os.environ, "PYTHONWARNINGS": "ignore"})


@pytest.fixture(scope="module")
def outcomes(request, tmp_path_factory) -> dict[str, tuple[Future, dict[str, Path]]]:
    """Start the subprocesses of the cases this session runs, a few at a time."""
    chosen = {item.callspec.params["item"].id for item in request.session.items
              if getattr(item, "originalname", None) == "test_bad_input_gives_one_error_line_naming_the_culprit"}
    paths = write_bad_inputs(tmp_path_factory.mktemp("bad_inputs"))
    pool = ThreadPoolExecutor(WORKERS)
    futures = {item.id: (pool.submit(run_case, item, paths), paths) for item in CASES if item.id in chosen}
    yield futures
    pool.shutdown(wait=True, cancel_futures=True)


def test_the_table_covers_every_tool():
    """At least 25 cases, at least two per tool, every id unique."""
    tools = {item.tool for item in CASES}
    assert tools == {"train", "eval", "infer", "export", "check_data", "convert"}
    assert len(CASES) >= 25 and len({item.id for item in CASES}) == len(CASES)
    assert all(sum(item.tool == tool for item in CASES) >= 2 for tool in tools)


@pytest.mark.parametrize("item", CASES, ids=[item.id for item in CASES])
def test_bad_input_gives_one_error_line_naming_the_culprit(item: Case, outcomes):
    """No traceback, exit code 2, exactly one error line, and that line names every culprit."""
    future, paths = outcomes[item.id]
    result = future.result()
    output = result.stdout + result.stderr
    shown = f"{item.tool} {' '.join(item.args)} -> exit {result.returncode}:\n{output[-3000:]}"
    assert "Traceback" not in output, shown
    assert result.returncode == 2, shown
    errors = [line for line in output.splitlines() if ERROR_LINE.match(line)]  # splitlines: a progress bar's \r too
    assert len(errors) == 1, shown
    assert "usage:" not in output, shown
    names = {k: str(v) for k, v in paths.items()}
    for culprit in item.culprits:
        if culprit.startswith("re:"):
            assert re.search(culprit[3:], errors[0]), (culprit, shown)
        else:
            assert culprit.format(**names) in errors[0], (culprit, shown)


def test_result_masks_are_checked_against_their_image():
    """An RLE of another size, runs that do not cover the image, and bad polygons name the
    entry; a well-formed RLE and polygons pass. (In-process: the CLI path is the one above.)"""
    import numpy as np
    from pycocotools import mask as mask_utils

    from detseg.errors import DataError
    from detseg.evaluation.coco import CocoEvaluator
    from detseg.evaluation.results import check_results

    mask = np.zeros((6, 8), np.uint8, order="F")
    mask[1:4, 2:7] = 1
    rle = mask_utils.encode(mask)
    rle = {"size": rle["size"], "counts": rle["counts"].decode()}
    ground_truth = {"images": [{"id": 1, "height": 6, "width": 8, "file_name": "a.png"}],
                    "categories": [{"id": 1, "name": "thing"}],
                    "annotations": [{"id": 1, "image_id": 1, "category_id": 1, "bbox": [2, 1, 5, 3], "area": 15,
                                     "iscrowd": 0, "segmentation": rle}]}
    entry = {"image_id": 1, "category_id": 1, "score": 0.5}
    check_results([{**entry, "segmentation": rle}, {**entry, "segmentation": [[0, 0, 4, 0, 4, 4]]}],
                  ground_truth, "segm", "r.json")
    bad = [({**rle, "size": [8, 6]}, "RLE size"), ({**rle, "counts": rle["counts"][:-1]}, "malformed RLE"),
           ({"size": [6, 8], "counts": [10, 5]}, "malformed RLE"), ([[0, 0, float("nan"), 1, 2, 2]], "invalid polygons")]
    for segmentation, problem in bad:
        with pytest.raises(DataError, match=rf"r\.json: entry 1 \(image_id 1\): {problem}"):
            check_results([{**entry, "segmentation": rle}, {**entry, "segmentation": segmentation}],
                          ground_truth, "segm", "r.json")
    ground_truth["annotations"][0].pop("segmentation")
    with pytest.raises(DataError, match="ground-truth annotation 1 .* no 'segmentation'"):
        CocoEvaluator(ground_truth, iou_type="segm")
