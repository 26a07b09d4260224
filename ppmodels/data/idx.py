"""MNIST and Fashion-MNIST from the standard IDX files, with checked downloads.

The four files (``train-images-idx3-ubyte``, ``train-labels-idx1-ubyte``,
``t10k-images-idx3-ubyte``, ``t10k-labels-idx1-ubyte``, each optionally ``.gz``) are read
from a folder. With ``download=True`` missing files are fetched into a cache folder and
verified by SHA-256; a download is written to a temporary file beside its destination and
moved into place only once its checksum matches, so a failed or corrupt download leaves
nothing behind.
"""

from __future__ import annotations

import gzip
import hashlib
import os
import urllib.error
import urllib.request
import zlib
from pathlib import Path

import numpy as np
import torch

from .._atomic import replaced_atomically
from ._image_data import ImageData

IDX_FILES = (
    "train-images-idx3-ubyte",
    "train-labels-idx1-ubyte",
    "t10k-images-idx3-ubyte",
    "t10k-labels-idx1-ubyte",
)

#: SHA-256 of the published ``.gz`` files.
MNIST_SHA256 = {
    "train-images-idx3-ubyte.gz": "440fcabf73cc546fa21475e81ea370265605f56be210a4024d2ca8f203523609",
    "train-labels-idx1-ubyte.gz": "3552534a0a558bbed6aed32b30c495cca23d567ec52cac8be1a0730e8010255c",
    "t10k-images-idx3-ubyte.gz": "8d422c7b0a1c1c79245a5bcf07fe86e33eeafee792b84584aec276f5a2dbc4e6",
    "t10k-labels-idx1-ubyte.gz": "f7ae60f92e00ec6debd23a6088c31dbd2371eca3ffa0defaefb259924204aec6",
}
FASHION_MNIST_SHA256 = {
    "train-images-idx3-ubyte.gz": "08dc20ab1689590a0bcd66e874647b6ee8464e2d501b5a3f1f78831db19a3fdc",
    "train-labels-idx1-ubyte.gz": "b0197879cbda89f3dc7b894f9fd52b858e68ea4182b6947c9d8c2b67e5f18dcc",
    "t10k-images-idx3-ubyte.gz": "78dcbbfb5a27efaf1b6c1d616caca68560be8766c5bffcb2791df9273a534229",
    "t10k-labels-idx1-ubyte.gz": "42bd18137a62d5998cdeae52bf3a0676ac6b706f5cf8439b47bb5b151ae3dccf",
}
MNIST_MIRRORS = (
    "https://ossci-datasets.s3.amazonaws.com/mnist/",
    "https://storage.googleapis.com/cvdf-datasets/mnist/",
)
FASHION_MNIST_MIRRORS = ("http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",)
FASHION_CLASSES = (
    "T-shirt/top",
    "Trouser",
    "Pullover",
    "Dress",
    "Coat",
    "Sandal",
    "Shirt",
    "Sneaker",
    "Bag",
    "Ankle boot",
)


class ChecksumError(OSError):
    """A downloaded file's SHA-256 does not match the expected one."""


def default_cache_dir() -> Path:
    """``$PPMODELS_CACHE`` if set, else ``~/.cache/ppmodels``."""
    return Path(os.environ.get("PPMODELS_CACHE", Path.home() / ".cache" / "ppmodels"))


def sha256_of(path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def read_idx(path) -> np.ndarray:
    """Read one IDX file (``.gz`` or raw) of unsigned bytes into a numpy array."""
    path = Path(path)
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rb") as fh:
            data = fh.read()
    except (EOFError, gzip.BadGzipFile, zlib.error) as exc:
        raise ValueError(
            f"{path} is not a complete gzip file ({type(exc).__name__}: {exc}): the download or copy was cut short; "
            "delete it and fetch it again (download=True checks each file's SHA-256)"
        ) from None
    if len(data) < 4 or data[0] != 0 or data[1] != 0:
        raise ValueError(f"{path} is not an IDX file: bad magic number {data[:4].hex()!r}")
    if data[2] != 0x08:
        raise ValueError(f"{path}: only unsigned-byte IDX files (type 0x08) are read, got type {data[2]:#04x}")
    ndim = data[3]
    header = 4 + 4 * ndim
    dims = tuple(int.from_bytes(data[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim))
    expected = int(np.prod(dims)) if dims else 0
    if len(data) - header != expected:
        raise ValueError(
            f"{path}: header says shape {dims} ({expected} bytes) but the file holds {len(data) - header} bytes"
        )
    return np.frombuffer(data, dtype=np.uint8, offset=header).reshape(dims)


def _find(folder: Path, stem: str):
    for candidate in (folder / (stem + ".gz"), folder / stem):
        if candidate.is_file():
            return candidate
    return None


def download(url: str, destination, sha256: str | None, timeout: float = 60.0) -> Path:
    """Fetch ``url`` into ``destination`` atomically, verifying ``sha256`` when given.

    The bytes go to a temporary file in the destination folder; it is renamed into place
    only after the whole body arrived and its digest matched. On any failure the temporary
    file is removed and the destination is left as it was.
    """
    destination = Path(destination)
    destination.parent.mkdir(parents=True, exist_ok=True)
    digest = hashlib.sha256()
    with replaced_atomically(destination) as out:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            for chunk in iter(lambda: response.read(1 << 20), b""):
                digest.update(chunk)
                out.write(chunk)
        out.flush()
        os.fsync(out.fileno())
        actual = digest.hexdigest()
        if sha256 is not None and actual != sha256:
            raise ChecksumError(
                f"checksum mismatch for {destination.name} from {url}: expected sha256 {sha256}, "
                f"got {actual}; the file was discarded"
            )
    return destination


def _fetch_missing(folder: Path, checksums: dict, mirrors, timeout: float) -> None:
    for filename, sha in checksums.items():
        target = folder / filename
        if target.is_file():
            if sha256_of(target) == sha:
                continue
            target.unlink()  # a stale or corrupt cached copy: fetch it again
        errors = []
        for base in mirrors:
            url = base.rstrip("/") + "/" + filename
            try:
                download(url, target, sha, timeout=timeout)
                break
            except (OSError, urllib.error.URLError) as exc:
                errors.append(f"{url}: {exc}")
        else:
            raise OSError(f"could not download {filename}; tried:\n  " + "\n  ".join(errors))


def load_idx_folder(folder, name: str, class_names) -> ImageData:
    """Read the four IDX files of an MNIST-format dataset from ``folder``."""
    folder = Path(folder)
    paths = {stem: _find(folder, stem) for stem in IDX_FILES}
    missing = [stem for stem, p in paths.items() if p is None]
    if missing:
        expected = ", ".join(f"{s}[.gz]" for s in IDX_FILES)
        raise FileNotFoundError(
            f"{name}: missing {', '.join(missing)} in {folder}. Expected the four IDX files {expected} "
            "(or pass download=True to fetch them)"
        )
    train_x, train_y, test_x, test_y = (read_idx(paths[s]) for s in IDX_FILES)
    for images, labels, split in ((train_x, train_y, "train"), (test_x, test_y, "t10k")):
        if images.ndim != 3 or labels.ndim != 1 or len(images) != len(labels):
            raise ValueError(
                f"{name} {split}: images of shape {images.shape} do not match labels of shape {labels.shape}"
            )
        classes = len(class_names)
        if labels.size and (int(labels.min()) < 0 or int(labels.max()) >= classes):
            bad = int(labels.min()) if int(labels.min()) < 0 else int(labels.max())
            raise ValueError(
                f"{name} {split}: {paths[f'{split}-labels-idx1-ubyte']} holds label {bad}, outside [0, {classes}) "
                f"({name} has {classes} classes)"
            )

    def to_x(a):
        return torch.from_numpy(a.astype(np.float32) / 255.0).unsqueeze(1)

    def to_y(a):
        return torch.from_numpy(a.astype(np.int64))

    return ImageData(to_x(train_x), to_y(train_y), to_x(test_x), to_y(test_y), name, 10, tuple(class_names))


def _load(name, folder, download, cache_dir, base_url, checksums, mirrors, class_names, timeout):
    if folder is None:
        if not download:
            raise ValueError(f"{name}: give the folder holding the IDX files, or pass download=True")
        folder = Path(cache_dir) if cache_dir is not None else default_cache_dir() / name
    folder = Path(folder)
    if download:
        _fetch_missing(folder, checksums, (base_url,) if base_url else mirrors, timeout)
    return load_idx_folder(folder, name, class_names)


def mnist(
    root=None,
    download: bool = False,
    cache_dir=None,
    base_url: str | None = None,
    checksums: dict | None = None,
    timeout: float = 60.0,
) -> ImageData:
    """MNIST (60,000 train / 10,000 test, 28x28) from IDX files.

    :param root: folder holding the IDX files; ``None`` means the cache folder
        (``cache_dir``, else ``~/.cache/ppmodels/mnist``) and needs ``download=True``.
    :param bool download: fetch missing files and verify them by SHA-256.
    :param str base_url: fetch from this URL prefix instead of the public mirrors.
    :param dict checksums: ``{filename.gz: sha256}`` to use instead of the published ones.
    """
    return _load(
        "mnist",
        root,
        download,
        cache_dir,
        base_url,
        checksums or MNIST_SHA256,
        MNIST_MIRRORS,
        [str(i) for i in range(10)],
        timeout,
    )


def fashion_mnist(
    root=None,
    download: bool = False,
    cache_dir=None,
    base_url: str | None = None,
    checksums: dict | None = None,
    timeout: float = 60.0,
) -> ImageData:
    """Fashion-MNIST (60,000 train / 10,000 test, 28x28) from IDX files; see :func:`mnist`."""
    return _load(
        "fashion-mnist",
        root,
        download,
        cache_dir,
        base_url,
        checksums or FASHION_MNIST_SHA256,
        FASHION_MNIST_MIRRORS,
        FASHION_CLASSES,
        timeout,
    )
