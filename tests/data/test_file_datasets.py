"""The COCO, VOC and label-folder loaders on files written from the shapes set."""

import json
import shutil

import numpy as np
import pytest

from detseg.data import CocoDataset, SegFolderDataset, VocDataset
from detseg.data.io import read_image, write_label_map
from detseg.errors import DataError


def test_committed_samples_load(repo_root):
    coco = CocoDataset(str(repo_root / "datasets/shapes_coco_mini/annotations/instances_val.json"),
                       str(repo_root / "datasets/shapes_coco_mini/val"))
    voc = VocDataset(str(repo_root / "datasets/shapes_voc_mini"), split="val")
    assert len(coco) == len(voc) == 8
    assert coco.class_names == voc.class_names == ["circle", "square", "triangle"]
    for i in range(8):
        a, b = coco[i], voc[i]
        assert np.allclose(a.gt.boxes.tensor, b.gt.boxes.tensor)
        assert a.gt.labels.tolist() == b.gt.labels.tolist()


def test_coco_and_voc_loaders_reproduce_the_generated_annotations(shapes_on_disk):
    source = shapes_on_disk["dataset"]
    coco = CocoDataset(str(shapes_on_disk["coco_json"]), str(shapes_on_disk["coco_images"]))
    voc = VocDataset(str(shapes_on_disk["voc_root"]), split="val")
    voc_seg = VocDataset(str(shapes_on_disk["voc_root"]), split="val", task="segmentation")
    for i in range(len(source)):
        record = source.load(i)
        for loaded in (coco.load(i), voc.load(i)):
            assert np.array_equal(loaded.boxes, record.boxes)
            assert np.array_equal(loaded.labels, record.labels)
        assert np.array_equal(coco.load(i).masks, record.masks)
        assert np.array_equal(voc_seg.load(i).sem_seg, record.sem_seg)
    assert coco.coco_ground_truth()["annotations"][0]["category_id"] == 1


def test_coco_sparse_category_ids_map_to_contiguous_labels_and_crowd_becomes_ignore(tmp_path):
    image = np.full((20, 30, 3), 128, np.uint8)
    import cv2

    cv2.imwrite(str(tmp_path / "a.png"), image)
    data = {
        "images": [{"id": 7, "file_name": "a.png", "height": 20, "width": 30},
                   {"id": 8, "file_name": "a.png", "height": 20, "width": 30}],
        "categories": [{"id": 90, "name": "z"}, {"id": 3, "name": "c"}],
        "annotations": [
            {"id": 1, "image_id": 7, "category_id": 90, "bbox": [1, 1, 5, 5], "iscrowd": 0,
             "segmentation": [[1, 1, 6, 1, 6, 6, 1, 6]], "area": 25},
            {"id": 2, "image_id": 7, "category_id": 3, "bbox": [10, 2, 8, 8], "iscrowd": 1,
             "segmentation": {"size": [20, 30], "counts": [200, 8, 12, 8, 372]}, "area": 16},
        ],
    }
    (tmp_path / "ann.json").write_text(json.dumps(data))
    dataset = CocoDataset(str(tmp_path / "ann.json"), str(tmp_path))
    assert dataset.class_names == ["c", "z"] and dataset.category_ids == [3, 90]
    sample = dataset[0]
    assert sample.image_id == 7
    assert sample.gt.labels.tolist() == [1] and sample.gt_ignore.labels.tolist() == [0]
    assert sample.gt.masks[0].sum() == 25 and sample.gt_ignore.masks[0].sum() == 16
    empty = dataset[1]
    assert len(empty.gt) == 0 and empty.gt_ignore is None  # images without objects are kept


def write_coco(tmp_path, annotations, image_size=(20, 30), with_image=True):
    import cv2

    if with_image:
        cv2.imwrite(str(tmp_path / "a.png"), np.zeros((*image_size, 3), np.uint8))
    data = {"images": [{"id": 1, "file_name": "a.png", "height": image_size[0], "width": image_size[1]}],
            "categories": [{"id": 1, "name": "x"}], "annotations": annotations}
    path = tmp_path / "ann.json"
    path.write_text(json.dumps(data))
    return path


def ann(bbox, id=5):
    return {"id": id, "image_id": 1, "category_id": 1, "bbox": bbox, "iscrowd": 0, "area": 1}


def test_negative_width_names_file_and_annotation(tmp_path):
    path = write_coco(tmp_path, [ann([5, 5, -3, 4], id=17)])
    with pytest.raises(DataError, match=r"ann\.json: annotation 17 \(image a\.png\): negative width"):
        CocoDataset(str(path), str(tmp_path), with_masks=False)


def test_box_outside_the_image_is_clipped_with_a_warning(tmp_path):
    path = write_coco(tmp_path, [ann([25, 15, 10, 10], id=3)])
    with pytest.warns(UserWarning, match=r"1 box\(es\) reached outside.*annotation 3"):
        dataset = CocoDataset(str(path), str(tmp_path), with_masks=False)
    assert dataset[0].gt.boxes.tensor.tolist() == [[25, 15, 30, 20]]
    path = write_coco(tmp_path, [ann([40, 40, 10, 10], id=4)])
    with pytest.raises(DataError, match="annotation 4.*no area inside"):
        CocoDataset(str(path), str(tmp_path), with_masks=False)


def test_missing_and_corrupt_images_are_named(tmp_path):
    path = write_coco(tmp_path, [], with_image=False)
    with pytest.raises(DataError, match=r"1 error\(s\): missing image: .*a\.png: image file not found"):
        CocoDataset(str(path), str(tmp_path))
    (tmp_path / "a.png").write_bytes(b"not a png at all")
    dataset = CocoDataset(str(path), str(tmp_path))
    with pytest.raises(DataError, match=r"cannot decode image.*a\.png"):
        dataset[0]
    (tmp_path / "a.png").write_bytes(b"")
    with pytest.raises(DataError, match="a.png"):
        read_image(tmp_path / "a.png")


def test_unknown_category_and_bad_json(tmp_path):
    path = write_coco(tmp_path, [{**ann([1, 1, 2, 2]), "category_id": 4}])
    with pytest.raises(DataError, match="category_id 4 is not in 'categories'"):
        CocoDataset(str(path), str(tmp_path), with_masks=False)
    path.write_text("{broken")
    with pytest.raises(DataError, match="not valid JSON"):
        CocoDataset(str(path), str(tmp_path))


def test_voc_unknown_class_and_difficult_objects(shapes_on_disk, tmp_path):
    root = tmp_path / "voc"
    shutil.copytree(shapes_on_disk["voc_root"], root)
    xml = root / "Annotations" / "val_000001.xml"
    text = xml.read_text()
    xml.write_text(text.replace("<difficult>0</difficult>", "<difficult>1</difficult>", 1))
    sample = VocDataset(str(root), split="val")[0]
    assert sample.gt_ignore is not None and len(sample.gt_ignore) == 1
    xml.write_text(text.replace("<name>", "<name>hexagon", 1))
    with pytest.raises(DataError, match=r"val_000001\.xml: object 0: unknown class 'hexagon"):
        VocDataset(str(root), split="val")


def test_seg_folder_pairs_by_stem_and_checks_sizes_and_values(shapes_on_disk, tmp_path):
    images, masks = tmp_path / "images", tmp_path / "masks"
    images.mkdir()
    masks.mkdir()
    source = shapes_on_disk["dataset"]
    import cv2

    for i in range(3):
        record = source.load(i)
        cv2.imwrite(str(images / f"{i}.png"), record.image[:, :, ::-1])
        write_label_map(masks / f"{i}.png", record.sem_seg)
    dataset = SegFolderDataset(str(images), str(masks), ["background", "circle", "square", "triangle"])
    assert np.array_equal(dataset[1].gt_sem_seg.numpy(), source.load(1).sem_seg)
    assert dataset[1].gt is None
    write_label_map(masks / "2.png", np.zeros((10, 10), np.uint8))
    with pytest.raises(DataError, match=r"masks/2\.png: label map is 10x10 but its image 2\.png is 128x128"):
        dataset[2]
    write_label_map(masks / "2.png", np.full((128, 128), 7, np.uint8))
    with pytest.raises(DataError, match=r"label values \[7\]"):
        dataset[2]
    (masks / "0.png").unlink()
    with pytest.raises(DataError, match=r"missing mask: .*masks/0\.png: no label map for 0\.png"):
        SegFolderDataset(str(images), str(masks), ["a"])


def test_rle_mask_of_another_size_names_the_annotation(tmp_path):
    """Refused when the data set is built (as the data doctor reports it), unless masks are not loaded."""
    from detseg.structures.masks import mask_to_rle

    wrong = ann([2, 2, 5, 5], id=9)
    wrong["segmentation"] = mask_to_rle(np.ones((10, 10), bool))  # the image is 20x30
    path = write_coco(tmp_path, [wrong])
    with pytest.raises(DataError, match=r"ann\.json: annotation 9 \(image a\.png\): RLE mask size \[10, 10\].*\[20, 30\]"):
        CocoDataset(str(path), str(tmp_path))
    assert len(CocoDataset(str(path), str(tmp_path), with_masks=False)[0].gt) == 1
