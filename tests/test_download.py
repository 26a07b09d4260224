"""The download path, against a local HTTP server on 127.0.0.1 serving small IDX files."""

import functools
import hashlib
import http.server
import threading

import pytest

from ppmodels import data

from test_data import make_idx_folder

FILES = [
    "train-images-idx3-ubyte.gz",
    "train-labels-idx1-ubyte.gz",
    "t10k-images-idx3-ubyte.gz",
    "t10k-labels-idx1-ubyte.gz",
]


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


@pytest.fixture
def server(tmp_path):
    served = tmp_path / "served"
    make_idx_folder(served)
    handler = functools.partial(_QuietHandler, directory=str(served))
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    checksums = {f: hashlib.sha256((served / f).read_bytes()).hexdigest() for f in FILES}
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}/", checksums, httpd
    finally:
        httpd.shutdown()
        httpd.server_close()


def test_download_fetches_verifies_and_caches(server, tmp_path):
    url, checksums, httpd = server
    cache = tmp_path / "cache"
    d = data.mnist(download=True, cache_dir=cache, base_url=url, checksums=checksums, timeout=5)
    assert d.train_x.shape == (20, 1, 28, 28)
    assert sorted(p.name for p in cache.iterdir()) == sorted(FILES)
    httpd.shutdown()  # cached and verified: no network needed the second time
    again = data.mnist(download=True, cache_dir=cache, base_url=url, checksums=checksums, timeout=5)
    assert again.train_x.shape == (20, 1, 28, 28)


def test_checksum_mismatch_leaves_nothing_behind(server, tmp_path):
    url, checksums, _ = server
    cache = tmp_path / "cache"
    wrong = dict(checksums, **{"t10k-images-idx3-ubyte.gz": "0" * 64})
    with pytest.raises(OSError, match=r"(?s)could not download t10k-images-idx3-ubyte\.gz.*checksum mismatch"):
        data.mnist(download=True, cache_dir=cache, base_url=url, checksums=wrong, timeout=5)
    names = sorted(p.name for p in cache.iterdir())
    assert "t10k-images-idx3-ubyte.gz" not in names
    assert not [n for n in names if n.endswith(".part")]


def test_single_download_checksum_error_type(server, tmp_path):
    url, checksums, _ = server
    with pytest.raises(data.ChecksumError, match="expected sha256 " + "1" * 64):
        data.download(url + FILES[0], tmp_path / FILES[0], "1" * 64, timeout=5)
    assert list(tmp_path.iterdir()) == [tmp_path / "served"]


def test_missing_remote_file_reports_url_and_writes_nothing(server, tmp_path):
    url, checksums, _ = server
    cache = tmp_path / "cache"
    with pytest.raises(OSError, match=r"(?s)could not download.*404"):
        data.mnist(download=True, cache_dir=cache, base_url=url + "nothing-here/", checksums=checksums, timeout=5)
    assert not any(cache.iterdir())


def test_published_checksums_are_well_formed():
    for table in (data.idx.MNIST_SHA256, data.idx.FASHION_MNIST_SHA256):
        assert sorted(table) == sorted(FILES)
        assert all(len(v) == 64 and int(v, 16) >= 0 for v in table.values())
