"""Parts of a labeled set: some of its classes, and a held-out split of its images.

    person = keep_classes(labeled, ["person"])            # other objects dropped, images kept
    train, val = hold_out(person, fraction=0.2, seed=0)    # 80 % / 20 % of the images

Both return new :class:`LabeledSet` objects and leave their input as it was. For data that
comes as one annotation file (coco128, a labelling tool's export), ``tools/convert.py``
writes the two splits with ``--val-fraction``.
"""

from __future__ import annotations

import dataclasses
import random
from collections.abc import Sequence

from detseg.data.formats.entries import LabeledSet
from detseg.errors import DataError


def keep_classes(labeled: LabeledSet, names: Sequence[str]) -> LabeledSet:
    """Only the objects of the classes ``names``, relabelled in that order; every image
    stays, one left without objects as a negative. COCO category ids are kept.

    Raises:
        DataError: a name is not a class of the set (the message lists the classes).
    """
    unknown = [name for name in names if name not in labeled.class_names]
    if unknown:
        raise DataError(f"--classes: {', '.join(repr(n) for n in unknown)} not among the data set's "
                        f"{len(labeled.class_names)} classes ({', '.join(labeled.class_names)})")
    if len(set(names)) != len(names):
        raise DataError(f"--classes: a class is named twice in {list(names)}")
    new_label = {labeled.class_names.index(name): i for i, name in enumerate(names)}
    images = []
    for entry in labeled.images:
        kept = [dataclasses.replace(a, label=new_label[a.label]) for a in entry.annotations if a.label in new_label]
        images.append(dataclasses.replace(entry, annotations=kept))
    category_ids = None
    if labeled.category_ids is not None:
        category_ids = [labeled.category_ids[labeled.class_names.index(name)] for name in names]
    return LabeledSet(list(names), images, list(labeled.problems), category_ids)


def hold_out(labeled: LabeledSet, fraction: float, seed: int = 0) -> tuple[LabeledSet, LabeledSet]:
    """``(train, val)``: ``round(fraction * N)`` of the N images, drawn at random with
    ``seed``, go to ``val`` (at least one, and at least one stays in ``train``); both keep
    the image order of the source.

    Raises:
        DataError: ``fraction`` outside (0, 1), or fewer than 2 images.
    """
    if not 0 < fraction < 1:
        raise DataError(f"--val-fraction {fraction:g}: give a fraction between 0 and 1, e.g. 0.2")
    count = len(labeled.images)
    if count < 2:
        raise DataError(f"--val-fraction: {count} image(s) cannot be split into a training and a validation set")
    held = min(max(round(fraction * count), 1), count - 1)
    val_indices = set(random.Random(seed).sample(range(count), held))

    def part(held_out: bool) -> LabeledSet:
        images = [im for i, im in enumerate(labeled.images) if (i in val_indices) == held_out]
        return LabeledSet(list(labeled.class_names), images, list(labeled.problems), labeled.category_ids)

    return part(False), part(True)
