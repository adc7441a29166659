import gzip

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from advlab.data.idx import encode_idx, read_idx, write_idx
from advlab.errors import DataError

DTYPES = [np.uint8, np.int8, np.int16, np.int32, np.float32, np.float64]


@settings(max_examples=40, deadline=None)
@given(
    array=st.sampled_from(DTYPES).flatmap(
        lambda dtype: hnp.arrays(dtype, hnp.array_shapes(min_dims=1, max_dims=3, min_side=0, max_side=5))
    ),
    compress=st.booleans(),
)
def test_round_trip_any_dtype_and_shape(tmp_path_factory, array, compress):
    path = tmp_path_factory.mktemp("idx") / ("a.idx.gz" if compress else "a.idx")
    write_idx(path, array)
    back = read_idx(path)
    assert back.shape == array.shape and back.dtype == array.dtype
    np.testing.assert_array_equal(back, array)


def test_count_comes_from_header(tmp_path):
    images = np.arange(3 * 28 * 28, dtype=np.uint8).reshape(3, 28, 28)
    write_idx(tmp_path / "x.gz", images)
    assert read_idx(tmp_path / "x.gz").shape == (3, 28, 28)


@pytest.mark.parametrize(
    "mutate, message",
    [
        (lambda b: b"\x01" + b[1:], "magic"),
        (lambda b: b[:2] + b"\x42" + b[3:], "magic"),
        (lambda b: b[:-1], "holds"),
        (lambda b: b + b"\x00", "holds"),
        (lambda b: b[:6], "truncated IDX header"),
        (lambda b: b[:3], "too short"),
        (lambda b: b[:3] + b"\x00", "0 dimensions"),
    ],
)
def test_corrupt_files_name_the_problem(tmp_path, mutate, message):
    raw = encode_idx(np.zeros((2, 3), dtype=np.uint8))
    path = tmp_path / "bad.idx"
    path.write_bytes(mutate(raw))
    with pytest.raises(DataError, match=message) as info:
        read_idx(path)
    assert str(path) in str(info.value)


def test_truncated_gzip(tmp_path):
    payload = gzip.compress(encode_idx(np.zeros((50, 28, 28), dtype=np.uint8)))
    path = tmp_path / "cut.gz"
    path.write_bytes(payload[: len(payload) // 2])
    with pytest.raises(DataError, match="truncated gzip"):
        read_idx(path)


def test_missing_file(tmp_path):
    with pytest.raises(DataError, match="no such file"):
        read_idx(tmp_path / "nope.gz")


def test_shared_mnist_headers(mnist_dir):
    assert read_idx(mnist_dir / "train-images-idx3-ubyte.gz").shape == (6309, 28, 28)
    assert read_idx(mnist_dir / "t10k-labels-idx1-ubyte.gz").shape == (10000,)
