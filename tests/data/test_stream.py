import numpy as np
import pytest
import torch

from advlab.data import load_mnist, write_idx
from advlab.data.stream import IdxBatches, TensorBatches, as_batches, stream_length
from advlab.errors import DataError, InputError
from tests.data.test_sources import write_fake_mnist


@pytest.mark.parametrize("gzip", [True, False])
def test_idx_batches_equal_the_loaded_split(tmp_path, gzip):
    write_fake_mnist(tmp_path, 7, 5, gzip=gzip)
    splits = load_mnist(tmp_path)
    stream = IdxBatches(tmp_path, "train", 3)
    assert (len(stream), stream.n, stream_length(stream)) == (3, 7, 7)
    parts = list(stream)
    assert [len(y) for _, y in parts] == [3, 3, 1]
    assert torch.equal(torch.cat([x for x, _ in parts]), splits.train.images)
    assert torch.equal(torch.cat([y for _, y in parts]), splits.train.labels)
    assert sum(len(y) for _, y in IdxBatches(tmp_path, "test", 2, limit=3)) == 3


def test_idx_batches_refuse_bad_files(tmp_path):
    write_fake_mnist(tmp_path, 4, 2)
    write_idx(tmp_path / "train-labels-idx1-ubyte.gz", np.zeros(3, np.uint8))
    with pytest.raises(DataError, match="4 train images but 3 labels"):
        IdxBatches(tmp_path, "train", 2)
    with pytest.raises(DataError, match="does not exist"):
        IdxBatches(tmp_path / "absent", "train", 2)
    (tmp_path / "t10k-images-idx3-ubyte.gz").unlink()
    (tmp_path / "t10k-images-idx3-ubyte").write_bytes(bytes([0, 0, 8, 3, 0, 0, 0, 2, 0, 0, 0, 28, 0, 0, 0, 28]) + bytes(100))
    with pytest.raises(DataError, match="ends before"):
        list(IdxBatches(tmp_path, "test", 2))


def test_as_batches_accepts_tensors_and_loaders():
    x, y = torch.rand(5, 1, 2, 2), torch.arange(5)
    assert isinstance(as_batches((x, y), 2), TensorBatches)
    loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(x, y), batch_size=2)
    assert as_batches(loader) is loader and stream_length(loader) == 5
    with pytest.raises(InputError, match="iterable"):
        as_batches(3)
