import numpy as np
import pytest
import torch

from advlab.data import load_mnist, write_idx
from advlab.data.stream import IdxBatches, TensorBatches, as_batches, select, stream_length
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


def _counting_decode(monkeypatch):
    """Patch the IDX batch conversion to count its calls."""
    import advlab.data.stream as stream

    calls = []
    original = stream.decode_idx
    monkeypatch.setattr(stream, "decode_idx", lambda rows, shape: calls.append(len(rows)) or original(rows, shape))
    return calls


@pytest.mark.parametrize("gzip", [True, False])
def test_select_converts_only_the_owned_batches(tmp_path, monkeypatch, gzip):
    write_fake_mnist(tmp_path, 11, 2, gzip=gzip)
    whole = list(IdxBatches(tmp_path, "train", 3))
    calls = _counting_decode(monkeypatch)
    picked = list(select(IdxBatches(tmp_path, "train", 3), lambda k: k % 2 == 1))
    assert [n for n, _ in picked] == [3, 3, 3, 2] and [b is None for _, b in picked] == [True, False, True, False]
    assert calls == [3, 2]  # batches 1 and 3 converted, 0 and 2 skipped
    for k in (1, 3):
        assert all(torch.equal(a, b) for a, b in zip(picked[k][1], whole[k], strict=True))


def test_select_notices_truncated_data_it_skips(tmp_path):
    header = bytes([0, 0, 8, 3, 0, 0, 0, 4, 0, 0, 0, 28, 0, 0, 0, 28])
    (tmp_path / "train-images-idx3-ubyte").write_bytes(header + bytes(784 * 2))  # 2 of the 4 images declared
    (tmp_path / "train-labels-idx1-ubyte").write_bytes(bytes([0, 0, 8, 1, 0, 0, 0, 4]) + bytes(4))
    with pytest.raises(DataError, match="ends before"):
        list(select(IdxBatches(tmp_path, "train", 3), lambda k: k == 1))


class Counted(torch.utils.data.Dataset):
    def __init__(self, n):
        self.x, self.y, self.fetched = torch.rand(n, 1, 2, 2), torch.arange(n), []

    def __len__(self):
        return len(self.y)

    def __getitem__(self, i):
        self.fetched.append(i)
        return self.x[i], self.y[i]


def test_select_from_a_loader_fetches_only_the_owned_batches():
    data = Counted(10)
    loader = torch.utils.data.DataLoader(data, batch_size=4)
    picked = list(select(loader, lambda k: k == 1))
    assert [n for n, _ in picked] == [4, 4, 2] and picked[0][1] is None and picked[2][1] is None
    assert data.fetched == [4, 5, 6, 7] and picked[1][1][1].tolist() == [4, 5, 6, 7]
    tensors = list(select(TensorBatches(data.x, data.y, 4), lambda k: k != 1))
    assert [n for n, _ in tensors] == [4, 4, 2] and tensors[1][1] is None and torch.equal(tensors[2][1][1], data.y[8:])
    generic = list(select(iter(loader), lambda k: k == 2))  # any other iterable: read whole, others dropped
    assert [n for n, _ in generic] == [4, 4, 2] and [b is None for _, b in generic] == [True, True, False]


def test_a_shuffling_loader_is_refused():
    loader = torch.utils.data.DataLoader(Counted(4), batch_size=2, shuffle=True)
    with pytest.raises(InputError, match="does not shuffle"):
        as_batches(loader)
