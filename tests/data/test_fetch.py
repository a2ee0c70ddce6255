"""The fetcher: mirrors in order, checksums, atomic writes, a real HTTP server on 127.0.0.1."""

from __future__ import annotations

import gzip
import hashlib
import http.server
import threading
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch

from pipeline import plugins
from pipeline.data.fashion_mnist import load_split, read_idx
from pipeline.data.fetch import fetch_dataset, fetch_file
from pipeline.data.registry import FASHION_MNIST, MNIST1D, DatasetSource, FieldSpec, Readout, RemoteFile
from pipeline.errors import PipelineError


def idx_bytes(array: np.ndarray) -> bytes:
    codes = {np.dtype(np.uint8): 0x08}
    header = bytes([0, 0, codes[array.dtype], array.ndim])
    header += b"".join(int(d).to_bytes(4, "big") for d in array.shape)
    return gzip.compress(header + array.tobytes())


def write_split(folder: Path, split: str, n: int, seed: int = 0) -> dict[str, bytes]:
    rng = np.random.default_rng(seed)
    files = {
        f"{split}-images-idx3-ubyte.gz": idx_bytes(rng.integers(0, 256, (n, 28, 28), dtype=np.uint8)),
        f"{split}-labels-idx1-ubyte.gz": idx_bytes(rng.integers(0, 10, n, dtype=np.uint8)),
    }
    folder.mkdir(parents=True, exist_ok=True)
    for name, payload in files.items():
        (folder / name).write_bytes(payload)
    return files


def source_for(files: dict[str, bytes], mirror_dirs=(), base_urls=(), env="TEST_MIRROR",
               generator: str | None = None) -> DatasetSource:
    return DatasetSource(
        name="tiny",
        description="test data",
        files=tuple(RemoteFile(name, hashlib.sha256(payload).hexdigest()) for name, payload in files.items()),
        reader="pipeline.data.fashion_mnist:read",
        modality="image",
        fields=FASHION_MNIST.fields,
        mirror_env=env,
        mirror_dirs=tuple(str(d) for d in mirror_dirs),
        base_urls=tuple(base_urls),
        generator=generator,
    )


class Server:
    """Serves a folder on 127.0.0.1; `truncate` names files whose body is cut short while the
    Content-Length header still promises the whole file."""

    def __init__(self, folder: Path, truncate: set[str] = frozenset()):
        folder_, truncate_ = folder, truncate

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):  # noqa: N802
                path = folder_ / self.path.lstrip("/")
                if not path.is_file():
                    self.send_error(404)
                    return
                body = path.read_bytes()
                self.send_response(200)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body[: len(body) // 2] if path.name in truncate_ else body)

            def log_message(self, *args):
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.httpd.shutdown()
        self.httpd.server_close()


def test_read_idx_round_trip(tmp_path: Path):
    write_split(tmp_path, "train", 5, seed=3)
    images, labels = load_split(tmp_path, "train")
    rng = np.random.default_rng(3)  # the draws write_split made, in its order
    written_images = rng.integers(0, 256, (5, 28, 28), dtype=np.uint8)
    written_labels = rng.integers(0, 10, 5, dtype=np.uint8)
    assert images.shape == (5, 28, 28)
    assert images.dtype == np.uint8
    assert labels.shape == (5,)
    assert labels.dtype == np.int64
    np.testing.assert_array_equal(images, written_images)
    np.testing.assert_array_equal(labels, written_labels.astype(np.int64))


def test_read_idx_rejects_a_short_or_foreign_file(tmp_path: Path):
    good = gzip.decompress(idx_bytes(np.zeros((4, 28, 28), np.uint8)))
    (tmp_path / "short").write_bytes(good[:-10])
    (tmp_path / "foreign").write_bytes(b"PK\x03\x04 not idx")
    with pytest.raises(PipelineError, match="header promises"):
        read_idx(tmp_path / "short")
    with pytest.raises(PipelineError, match="bad magic"):
        read_idx(tmp_path / "foreign")


def test_local_mirror_from_the_environment_variable(tmp_path: Path, monkeypatch):
    files = write_split(tmp_path / "mirror", "train", 8)
    monkeypatch.setenv("TEST_MIRROR", str(tmp_path / "mirror"))
    folder = fetch_dataset(source_for(files), root=tmp_path / "data")
    assert sorted(p.name for p in folder.iterdir()) == sorted(files)
    assert load_split(folder, "train")[0].shape == (8, 28, 28)


@pytest.mark.parametrize("mirror", ["empty", "stale"], ids=["no-mirror-has-it", "bad-mirror-first"])
def test_http_download_after_the_mirrors(tmp_path: Path, mirror: str):
    files = write_split(tmp_path / "served", "train", 8)
    if mirror == "stale":
        write_split(tmp_path / "stale", "train", 8, seed=1)  # same names, other content
    with Server(tmp_path / "served") as server:
        folder = fetch_dataset(source_for(files, mirror_dirs=[tmp_path / mirror],
                                          base_urls=[server.url]), root=tmp_path / "data")
    for name, payload in files.items():
        assert (folder / name).read_bytes() == payload


def test_wrong_checksum_is_rejected_and_leaves_no_file(tmp_path: Path):
    files = write_split(tmp_path / "served", "train", 8)
    name = next(iter(files))
    with Server(tmp_path / "served") as server:
        bad = replace(source_for({}, base_urls=[server.url]), files=(RemoteFile(name, "0" * 64),))
        with pytest.raises(PipelineError, match="does not match"):
            fetch_dataset(bad, root=tmp_path / "data")
    assert list((tmp_path / "data" / "tiny").iterdir()) == []


def test_truncated_download_is_rejected_and_leaves_no_file(tmp_path: Path):
    files = write_split(tmp_path / "served", "train", 200)
    name = next(iter(files))
    with Server(tmp_path / "served", truncate={name}) as server:
        with pytest.raises(PipelineError, match="truncated|not match"):
            fetch_file(RemoteFile(name, hashlib.sha256(files[name]).hexdigest()),
                       tmp_path / "data", [], [server.url])
    assert list((tmp_path / "data").iterdir()) == []


def test_a_corrupt_cached_file_is_fetched_again(tmp_path: Path, monkeypatch):
    files = write_split(tmp_path / "mirror", "train", 8)
    monkeypatch.setenv("TEST_MIRROR", str(tmp_path / "mirror"))
    folder = fetch_dataset(source_for(files), root=tmp_path / "data")
    victim = folder / next(iter(files))
    victim.write_bytes(victim.read_bytes()[:100])
    fetch_dataset(source_for(files), root=tmp_path / "data")
    assert victim.read_bytes() == files[victim.name]


def test_nothing_anywhere_says_what_to_do(tmp_path: Path):
    files = write_split(tmp_path / "elsewhere", "train", 4)
    with pytest.raises(PipelineError, match="TEST_MIRROR"):
        fetch_dataset(source_for(files), root=tmp_path / "data")


def test_a_generated_dataset_is_made_then_checked_like_a_download(tmp_path: Path):
    """MNIST-1D comes from the `mnist1d` package: generated into data/, checked against the
    sha256 of the reference generation, and read as float signals [N, 1, 40]."""
    folder = fetch_dataset(MNIST1D, root=tmp_path / "data")
    assert sorted(p.name for p in folder.iterdir()) == sorted(f.name for f in MNIST1D.files)
    readout = MNIST1D.load_reader()(folder)
    (x_train, y_train), (x_test, y_test), classes = ((readout.train["input"], readout.train["label"]),
                                                     (readout.test["input"], readout.test["label"]), readout.classes)
    assert x_train.shape == (4000, 1, 40)
    assert x_test.shape == (1000, 1, 40)
    assert x_train.dtype == np.float32
    assert len(classes) == 10
    assert set(np.unique(y_train)) == set(range(10))
    assert len(y_test) == 1000
    assert fetch_dataset(MNIST1D, root=tmp_path / "data") == folder  # present and valid: nothing to do


def test_a_generator_whose_output_differs_is_rejected(tmp_path: Path):
    source = replace(MNIST1D, files=tuple(replace(f, sha256="0" * 64) for f in MNIST1D.files),
                     mirror_env="NO_SUCH_MIRROR")
    with pytest.raises(PipelineError, match="does not match(.|\\n)*pip install mnist1d"):
        fetch_dataset(source, root=tmp_path / "data")
    assert list((tmp_path / "data" / "mnist1d").iterdir()) == []
    assert [p.name for p in (tmp_path / "data").iterdir()] == ["mnist1d"]  # no scratch folder left


# A derived dataset: token ids made from a parent dataset's numbers by a seeded generator.
PARENT_NUMBERS = np.arange(40, dtype=np.int64)


def double(folder: Path, parents: dict[str, Path]) -> None:
    numbers = np.load(parents["parent_numbers"] / "numbers.npy")
    tokens = np.random.default_rng(0).permutation(numbers * 2).reshape(20, 2)  # seeded: the same every time
    np.save(folder / "tokens.npy", tokens)
    np.save(folder / "labels.npy", tokens[:, 0] % 3)


def read_tokens(folder: Path) -> Readout:
    tokens, labels = np.load(folder / "tokens.npy"), np.load(folder / "labels.npy")
    return Readout({"input": tokens[:15], "label": labels[:15]}, {"input": tokens[15:], "label": labels[15:]},
                   ("a", "b", "c"))


def _npy_sha(array: np.ndarray, tmp: Path) -> str:
    np.save(tmp, array)
    return hashlib.sha256(tmp.read_bytes()).hexdigest()


def test_a_derived_dataset_is_made_from_its_parent_checked_and_its_integers_stay_integers(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    from types import SimpleNamespace

    from pipeline.data.datamodule import TensorDataModule, load_splits, model_input

    mirror = tmp_path / "mirror"
    mirror.mkdir()
    parent_sha = _npy_sha(PARENT_NUMBERS, mirror / "numbers.npy")
    parent = DatasetSource("parent_numbers", "numbers", (RemoteFile("numbers.npy", parent_sha),),
                           reader="tests.data.test_fetch:read_tokens", modality="text",
                           fields=(FieldSpec("input", "int64", (2,)),), mirror_env="NO_SUCH_MIRROR",
                           mirror_dirs=(str(mirror),))
    expected = tmp_path / "expected"
    expected.mkdir()
    double(expected, {"parent_numbers": mirror})
    files = tuple(RemoteFile(name, hashlib.sha256((expected / name).read_bytes()).hexdigest())
                  for name in ("tokens.npy", "labels.npy"))
    derived = DatasetSource("derived_tokens", "token pairs", files, reader="tests.data.test_fetch:read_tokens",
                            modality="text", fields=(FieldSpec("input", "int64", (2,)), FieldSpec("label", "int64")),
                            mirror_env="NO_SUCH_MIRROR", generator="tests.data.test_fetch:double",
                            derived_from=("parent_numbers",))
    monkeypatch.setattr(plugins, "datasets", lambda: {"parent_numbers": parent, "derived_tokens": derived})
    root = tmp_path / "data"
    folder = fetch_dataset(derived, root=root)
    assert (root / "parent_numbers" / "numbers.npy").is_file()  # the parent was fetched first
    assert sorted(p.name for p in folder.iterdir()) == ["labels.npy", "tokens.npy"]
    # A generator whose output is not the recorded content is refused, like a corrupt download.
    wrong = replace(derived, name="derived_wrong", files=(replace(files[0], sha256="0" * 64),))
    with pytest.raises(PipelineError, match="does not match"):
        fetch_dataset(wrong, root=root)
    # Served as dict batches: the token ids stay int64 from the file to the model's input.
    splits = load_splits(SimpleNamespace(dataset="derived_tokens", val_fraction=0.2, train_subset=None), 0, root)
    assert splits.train["input"].dtype == torch.int64
    assert splits.input_shape == (2,)
    batch = next(iter(TensorDataModule(SimpleNamespace(batch_size=4, num_workers=0), 0, splits).train_dataloader()))
    assert set(batch) == {"input", "label"}
    assert batch["input"].shape == (4, 2)
    assert model_input(batch["input"]).dtype == torch.int64
    assert model_input(torch.full((2,), 255, dtype=torch.uint8)).tolist() == [1.0, 1.0]
