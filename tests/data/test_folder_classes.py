"""The class-to-label map of an image folder (`Dataset.class_to_idx`): numbered folders keep their
number whatever is missing, named folders are labelled by sorted position (ImageFolder's rule),
the map follows `take` and `select_classes`, and splits with other classes are refused."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from advlab.data import Dataset, Splits, load_image_folder
from advlab.data.catalog import stream_data
from advlab.errors import DataError, InputError


def _folder(root, classes, per_class=1):
    for name in classes:
        (root / name).mkdir(parents=True)
        for i in range(per_class):
            Image.fromarray(np.full((2, 2), 10 * i, np.uint8), mode="L").save(root / name / f"{i}.png")


def test_numbered_folders_keep_their_number_when_one_is_missing(tmp_path):
    """The issue's silent case: 0..9 without 8 used to read folder 9 as label 8."""
    _folder(tmp_path, [str(d) for d in range(10) if d != 8])
    splits = load_image_folder(tmp_path)
    assert splits.class_to_idx == {**{str(d): d for d in range(8)}, "9": 9}
    assert splits.test.labels.tolist() == [0, 1, 2, 3, 4, 5, 6, 7, 9]


def test_numbered_folders_sort_as_numbers(tmp_path):
    _folder(tmp_path, ["2", "10", "0"])
    data = load_image_folder(tmp_path).test
    assert list(data.class_to_idx.items()) == [("0", 0), ("2", 2), ("10", 10)]
    assert data.labels.tolist() == [0, 2, 10]


def test_named_folders_are_labelled_by_sorted_position(tmp_path):
    _folder(tmp_path, ["zebra", "ant", "cat"])
    assert load_image_folder(tmp_path).class_to_idx == {"ant": 0, "cat": 1, "zebra": 2}


def test_the_map_follows_take_and_select_classes(tmp_path):
    _folder(tmp_path, ["3", "5", "7"], per_class=2)
    splits = load_image_folder(tmp_path)
    assert splits.test.take(2).class_to_idx == {"3": 3, "5": 5, "7": 7}
    picked = splits.select_classes([7, 3])
    assert picked.class_to_idx == {"3": 1, "7": 0}
    assert picked.test.labels.tolist() == [1, 1, 0, 0]


def test_streamed_folder_carries_the_same_map(tmp_path):
    _folder(tmp_path, ["3", "5", "7"])
    batches, _ = stream_data(f"folder:{tmp_path}", None, "test", 2, classes=[7, 3])
    assert batches.class_to_idx == {"3": 1, "7": 0}
    with pytest.raises(InputError, match="class 4 does not occur"):
        stream_data(f"folder:{tmp_path}", None, "test", 2, classes=[3, 4])


def test_splits_with_other_classes_are_refused(tmp_path):
    _folder(tmp_path / "train", ["0", "1", "2"])
    _folder(tmp_path / "test", ["0", "2"])
    with pytest.raises(DataError, match=r"differ from test classes .*only in one: \['1'\]"):
        load_image_folder(tmp_path)


def test_a_selected_class_missing_from_one_split_is_refused(tmp_path):
    train = Dataset(torch.zeros(3, 1, 2, 2), torch.tensor([0, 1, 2]), "train")
    test = Dataset(torch.zeros(2, 1, 2, 2), torch.tensor([0, 1]), "test")
    with pytest.raises(InputError, match="class 2 does not occur in the test split"):
        Splits(train, test, "two").select_classes([0, 2])
    with pytest.raises(InputError, match="class 5 does not occur in the data"):
        Splits(train, test, "two").select_classes([0, 5])


def test_the_same_number_twice_is_refused(tmp_path):
    _folder(tmp_path, ["1", "01"])
    with pytest.raises(DataError, match="name the same number twice"):
        load_image_folder(tmp_path)
