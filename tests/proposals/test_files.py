import pickle

import numpy as np
import pytest

from detseg.data import ShapesDataset
from detseg.data.transforms import build_transforms
from detseg.errors import DataError
from detseg.proposals import ProposalAttacher, ProposalSet, read_proposals, write_proposals


def some_proposals():
    proposals = ProposalSet()
    proposals.add(1, np.array([[1, 2, 30, 40], [5, 5, 9, 9]], np.float32), np.array([0.9, 0.1], np.float32))
    proposals.add(2, np.zeros((0, 4), np.float32))
    return proposals


@pytest.mark.parametrize("suffix", [".json", ".pkl"])
def test_proposal_file_round_trips(tmp_path, suffix):
    path = tmp_path / f"p{suffix}"
    write_proposals(path, some_proposals())
    back = read_proposals(path)
    assert list(back.boxes) == [1, 2]
    np.testing.assert_allclose(back.boxes[1], [[1, 2, 30, 40], [5, 5, 9, 9]])
    np.testing.assert_allclose(back.scores[1], [0.9, 0.1])
    assert back.boxes[2].shape == (0, 4)


def test_detectron2_style_xywh_file_is_converted(tmp_path):
    path = tmp_path / "d2.pkl"
    payload = {"ids": np.array([7]), "boxes": [np.array([[10, 20, 5, 6]], np.float32)],
               "objectness_logits": [np.array([2.5], np.float32)], "bbox_mode": 1}
    path.write_bytes(pickle.dumps(payload))
    back = read_proposals(path)
    np.testing.assert_allclose(back.boxes[7], [[10, 20, 15, 26]])


def test_a_pickle_that_would_run_code_is_refused(tmp_path):
    class Evil:
        def __reduce__(self):
            return (print, ("pwned",))

    path = tmp_path / "evil.pkl"
    path.write_bytes(pickle.dumps({"ids": [1], "boxes": [Evil()]}))
    with pytest.raises(DataError, match=r"evil\.pkl: not a proposals pickle.*builtins\.print"):
        read_proposals(path)


def test_missing_image_id_is_named_and_outside_boxes_are_clipped(tmp_path):
    path = tmp_path / "p.json"
    proposals = ProposalSet()
    proposals.add(1, np.array([[-5, 3, 200, 50], [130, 130, 140, 140]], np.float32))
    write_proposals(path, proposals)
    attacher = ProposalAttacher(path)
    with pytest.warns(UserWarning, match=r"p\.json: proposals of image id 1 .*clipped"):
        boxes, _ = attacher(1, 128, 128)
    np.testing.assert_allclose(boxes, [[0, 3, 128, 50]])  # the box wholly outside is dropped
    with pytest.raises(DataError, match=r"p\.json: no proposals for image id 3"):
        attacher(3, 128, 128)
    with pytest.raises(DataError, match="not found; make it with"):
        read_proposals(tmp_path / "absent.pkl")


def test_proposals_follow_the_image_through_a_flip(tmp_path):
    path = tmp_path / "p.json"
    proposals = ProposalSet()
    proposals.add(1, np.array([[10, 20, 30, 60], [0, 0, 64, 64]], np.float32))
    write_proposals(path, proposals)
    dataset = ShapesDataset(num_images=1, image_size=64,
                            transforms=build_transforms([{"name": "horizontal_flip", "p": 1.0}]))
    dataset.proposals = ProposalAttacher(path)
    sample = dataset[0]
    assert sample.proposals.boxes.tensor.tolist() == [[34, 20, 54, 60], [0, 0, 64, 64]]
    assert sample.proposals.scores.tolist() == [0, -1]
