"""`fetch_mnist` against a real HTTP server on 127.0.0.1 (never the internet)."""

import functools
import hashlib
import http.server
import threading

import pytest

from advlab.data import fetch_mnist, load_mnist
from advlab.data.sources import OFFICIAL_MD5
from advlab.errors import DataError, InputError

from .test_sources import write_fake_mnist


@pytest.fixture
def serve():
    servers = []

    def start(directory):
        handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(directory))
        handler.log_message = lambda *args: None
        server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        servers.append(server)
        return f"http://127.0.0.1:{server.server_address[1]}/"

    yield start
    for server in servers:
        server.shutdown()
        server.server_close()


def md5s(directory):
    return {p.name: hashlib.md5(p.read_bytes()).hexdigest() for p in sorted(directory.glob("*.gz"))}


def test_fetch_verifies_and_renames_into_place(tmp_path, serve):
    source = tmp_path / "mirror"
    source.mkdir()
    write_fake_mnist(source)
    dead = serve(tmp_path / "empty")  # every file 404s here: the next mirror is tried
    url = serve(source)
    dest = tmp_path / "dest"
    paths = fetch_mnist(dest, mirrors=[dead, url], checksums=md5s(source))
    assert sorted(p.name for p in paths) == sorted(md5s(source))
    assert md5s(dest) == md5s(source)
    assert len(load_mnist(dest).train) == 7
    assert not list(dest.glob(".*tmp"))


def test_md5_mismatch_leaves_nothing(tmp_path, serve):
    source = tmp_path / "mirror"
    source.mkdir()
    write_fake_mnist(source)
    checksums = {**md5s(source), "t10k-images-idx3-ubyte.gz": "0" * 32}
    dest = tmp_path / "dest"
    with pytest.raises(DataError, match="md5 mismatch"):
        fetch_mnist(dest, mirrors=[serve(source)], checksums=checksums)
    assert not (dest / "t10k-images-idx3-ubyte.gz").exists()
    assert not list(dest.glob(".*tmp"))


def test_fetch_shared_files_with_official_checksums(tmp_path, serve, mnist_dir):
    """The shared test files are byte-identical to the official ones; the training files are a
    6,309-image prefix, so the official md5 must reject them."""
    url = serve(mnist_dir)
    dest = tmp_path / "dest"
    official_test = {k: v for k, v in OFFICIAL_MD5.items() if k.startswith("t10k")}
    assert len(fetch_mnist(dest, mirrors=[url], checksums=official_test)) == 2
    with pytest.raises(DataError, match="md5 mismatch"):
        fetch_mnist(dest, mirrors=[url])
    assert not (dest / "train-images-idx3-ubyte.gz").exists()


@pytest.mark.parametrize("mirror", ["notaurl", "http://", "ftp//x", "/some/path"])
def test_mirrors_must_be_urls(tmp_path, mirror):
    with pytest.raises(InputError, match="is not an http"):
        fetch_mnist(tmp_path / "d", mirrors=[mirror])
    assert not (tmp_path / "d").exists()


def test_fetch_into_an_existing_file_is_refused(tmp_path):
    (tmp_path / "f").write_text("x")
    with pytest.raises(DataError, match="not a directory"):
        fetch_mnist(tmp_path / "f", mirrors=["http://127.0.0.1:9/"])
