import gzip

import numpy as np
import pytest
import torch

from ppmodels import data


def write_idx(path, array, compress=True):
    array = np.asarray(array, dtype=np.uint8)
    header = bytes([0, 0, 0x08, array.ndim]) + b"".join(int(d).to_bytes(4, "big") for d in array.shape)
    payload = header + array.tobytes()
    if compress:
        with gzip.open(path, "wb") as fh:
            fh.write(payload)
    else:
        path.write_bytes(payload)
    return path


def make_idx_folder(folder, n_train=20, n_test=10, size=28, compress=True, seed=0):
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    ext = ".gz" if compress else ""
    arrays = {
        "train-images-idx3-ubyte": rng.integers(0, 256, (n_train, size, size)),
        "train-labels-idx1-ubyte": rng.integers(0, 10, n_train),
        "t10k-images-idx3-ubyte": rng.integers(0, 256, (n_test, size, size)),
        "t10k-labels-idx1-ubyte": rng.integers(0, 10, n_test),
    }
    for stem, arr in arrays.items():
        write_idx(folder / (stem + ext), arr, compress)
    return arrays


def test_digits_default_is_8x8_in_unit_range_with_fixed_stratified_split():
    d = data.digits()
    assert d.train_x.shape == (1437, 1, 8, 8) and d.test_x.shape == (360, 1, 8, 8)
    assert d.train_x.dtype == torch.float32 and d.train_y.dtype == torch.int64
    assert float(d.train_x.min()) == 0.0 and float(d.train_x.max()) == 1.0
    counts = torch.bincount(d.test_y, minlength=10)
    assert int(counts.min()) >= 35  # stratified: every class ~36 of 360
    again = data.digits()
    assert torch.equal(d.test_y, again.test_y) and torch.equal(d.train_x, again.train_x)


@pytest.mark.parametrize("size", [28, 32])
def test_digits_resized(size):
    d = data.digits(image_size=size)
    assert d.train_x.shape[1:] == (1, size, size) and d.image_shape == (1, size, size)
    assert 0.0 <= float(d.train_x.min()) and float(d.train_x.max()) <= 1.0


@pytest.mark.parametrize("bad", [7, 64, True, "28"])
def test_digits_bad_size_names_argument(bad):
    with pytest.raises(ValueError, match=r"`image_size` must be one of \(8, 28, 32\)"):
        data.digits(image_size=bad)


@pytest.mark.parametrize("compress", [True, False], ids=["gz", "raw"])
def test_mnist_reads_idx_folder(tmp_path, compress):
    arrays = make_idx_folder(tmp_path, compress=compress)
    d = data.mnist(tmp_path)
    assert d.train_x.shape == (20, 1, 28, 28) and d.test_x.shape == (10, 1, 28, 28)
    np.testing.assert_allclose(d.train_x[:, 0].numpy(), arrays["train-images-idx3-ubyte"] / 255.0, rtol=1e-6)
    np.testing.assert_array_equal(d.test_y.numpy(), arrays["t10k-labels-idx1-ubyte"])
    assert data.fashion_mnist(tmp_path).class_names[9] == "Ankle boot"


def test_missing_idx_file_names_the_expected_files(tmp_path):
    make_idx_folder(tmp_path)
    (tmp_path / "t10k-labels-idx1-ubyte.gz").unlink()
    with pytest.raises(FileNotFoundError, match=r"missing t10k-labels-idx1-ubyte .*train-images-idx3-ubyte\[\.gz\]"):
        data.mnist(tmp_path)


def test_corrupt_idx_header_is_reported(tmp_path):
    write_idx(tmp_path / "x.gz", np.zeros((3, 4, 4)))
    raw = gzip.decompress((tmp_path / "x.gz").read_bytes())
    (tmp_path / "bad").write_bytes(b"\x01\x02" + raw[2:])
    with pytest.raises(ValueError, match="bad magic number"):
        data.read_idx(tmp_path / "bad")
    (tmp_path / "short").write_bytes(raw[:-5])
    with pytest.raises(ValueError, match=r"header says shape \(3, 4, 4\)"):
        data.read_idx(tmp_path / "short")


def test_load_spec_parsing(tmp_path):
    make_idx_folder(tmp_path)
    assert data.load("digits", image_size=28).image_shape == (1, 28, 28)
    assert data.load(f"mnist:{tmp_path}", image_size=32).image_shape == (1, 32, 32)
    with pytest.raises(ValueError, match=r"`data` must be one of \['digits', 'mnist', 'fashion-mnist'\]"):
        data.load("cifar")
    with pytest.raises(ValueError, match="needs the folder holding its IDX files"):
        data.load("mnist")
    with pytest.raises(ValueError, match="takes no folder"):
        data.load("digits:/tmp")
