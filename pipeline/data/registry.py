"""The datasets the fetch stage knows: their files, checksums and where to find them.

Pure data, cheap to import: the spec validates `data.dataset` against these names.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import Any, Literal


@dataclass(frozen=True)
class RemoteFile:
    name: str
    sha256: str


@dataclass(frozen=True)
class Reference:
    """A published result on a dataset's test split, shown in reports beside ours."""

    model: str
    accuracy: float
    source: str


@dataclass(frozen=True)
class FieldSpec:
    """One named tensor of every example (a batch holds [B, *shape] of it)."""

    name: str
    dtype: Literal["uint8", "float32", "int64"]
    """uint8: intensities (pixels, frames), scaled to [0, 1] for a model; float32: values as they are;
    int64: integers (class labels, token ids, voken ids), which stay integers."""
    shape: tuple[int, ...] = ()
    """Of one example; () for a scalar such as a class label."""
    description: str = ""


@dataclass(frozen=True)
class DatasetSource:
    name: str
    description: str
    files: tuple[RemoteFile, ...]
    reader: str
    """`module:function` (folder) -> Readout: train and test examples as {field: array [N, ...]},
    and the class names where the dataset has class labels."""
    modality: Literal["image", "sequence", "series", "video", "text", "image-text", "vector"]
    """What a model must take to train on it; each model kind declares the modalities it takes.
    sequence: labelled sequences [C, L]; series: windows of one long series to forecast, with the
    next value at each step as the field `target` [C, L]."""
    fields: tuple[FieldSpec, ...]
    """The tensors of each example. `input` is what an encoder reads; `label` (int64, the class)
    is there only where the dataset has class labels."""
    mirror_env: str
    """Environment variable naming a local folder that holds the files (tried first)."""
    mirror_dirs: tuple[str, ...] = ()
    """Local folders tried next (e.g. a distribution's data package)."""
    generator: str | None = None
    """`module:function` (folder, parents) that writes the files: a dataset made by code, not
    downloaded; `parents` maps each dataset of `derived_from` to its checked folder. What it writes
    is checked against the same sha256s as a download."""
    derived_from: tuple[str, ...] = ()
    """Datasets the generator reads (fetched and checked first): a dataset derived from another."""
    base_urls: tuple[str, ...] = ()
    """Tried last, in order: each file is downloaded from base_url + '/' + name."""
    fix_hint: str = ""
    """What to do when no source yields the files (besides setting mirror_env)."""
    references: tuple[Reference, ...] = ()

    def field(self, name: str) -> FieldSpec | None:
        return next((f for f in self.fields if f.name == name), None)

    @property
    def input_shape(self) -> tuple[int, ...]:
        """One example of the `input` field, channels first: [C, H, W] images, [C, L] sequences."""
        return self.field("input").shape

    @property
    def labelled(self) -> bool:
        return self.field("label") is not None

    def load_reader(self) -> Any:
        return _resolve(self.reader)

    def load_generator(self) -> Any:
        return _resolve(self.generator) if self.generator else None


@dataclass(frozen=True)
class Readout:
    """What a dataset's reader returns: each split as {field: array [N, ...]} and, for a labelled
    dataset, the class names (index = label)."""

    train: dict[str, Any]
    test: dict[str, Any]
    classes: tuple[str, ...] | None = None


def _resolve(target: str) -> Any:
    module_name, name = target.split(":")
    return getattr(importlib.import_module(module_name), name)


FASHION_MNIST = DatasetSource(
    name="fashion_mnist",
    description="Fashion-MNIST (Xiao et al. 2017): 60k/10k 28x28 grey images, 10 classes",
    files=(
        RemoteFile(
            "train-images-idx3-ubyte.gz",
            "b0564c3eedabfbf835052cff8503ea422014ce006caf5b757f851416ee8300c7",
        ),
        RemoteFile(
            "train-labels-idx1-ubyte.gz",
            "0ae29f65d86684f32d1b9c85147786c547b9c6aebcaf235f0400a0cce308b056",
        ),
        RemoteFile(
            "t10k-images-idx3-ubyte.gz",
            "cc1d090a38ace84dfa1aa66e3ada7c336ef481a96936906477e6dd344da56eaa",
        ),
        RemoteFile(
            "t10k-labels-idx1-ubyte.gz",
            "8d3605d196f4be44669e46906da9733c8131fef761fdbfec72c424d5222f1a05",
        ),
    ),
    reader="pipeline.data.fashion_mnist:read",
    modality="image",
    fields=(FieldSpec("input", "uint8", (1, 28, 28), "grey image"), FieldSpec("label", "int64", (), "class")),
    mirror_env="FASHION_MNIST_DIR",
    mirror_dirs=("/usr/share/datasets/fashion-mnist",),
    base_urls=(
        "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com",
        "https://github.com/zalandoresearch/fashion-mnist/raw/master/data/fashion",
    ),
    fix_hint="install Debian's dataset package (apt-get install dataset-fashion-mnist)",
)

MNIST1D = DatasetSource(
    name="mnist1d",
    description="MNIST-1D (Greydanus 2020): 4000/1000 signals of 40 samples, 10 classes, generated",
    files=(
        RemoteFile("x_train.npy", "88324c8902778fbd2316ae1f8acbf36d87897390c1c2ad68212f4290790fa2b5"),
        RemoteFile("y_train.npy", "c718026182802e01693cbbad83b2af62a4e717da302e71815ac77fdbed4c5dde"),
        RemoteFile("x_test.npy", "d67069fc4db4b87677475f89583e9191285825f1eee33060f2fa2dc99fe5a53a"),
        RemoteFile("y_test.npy", "4134144e011c5abc45fc2a1f8fcad9556a4addd3bab819f191c3245d7018c243"),
    ),
    reader="pipeline.data.mnist1d:read",
    modality="sequence",
    fields=(FieldSpec("input", "float32", (1, 40), "signal"), FieldSpec("label", "int64", (), "class")),
    mirror_env="MNIST1D_DIR",
    generator="pipeline.data.mnist1d:generate",
    fix_hint="install the generator (pip install mnist1d)",
    references=tuple(
        Reference(model, accuracy, "Greydanus 2020, supervised, test split")
        for model, accuracy in (("logistic regression", 0.32), ("MLP", 0.68), ("CNN", 0.94), ("GRU", 0.91))
    ),
)

MNIST1D_IRREGULAR = DatasetSource(
    name="mnist1d_irregular",
    description="MNIST-1D irregularly sampled: half of each signal's 40 samples dropped (seeded), the 20 kept "
                "with the time since the previous one",
    files=(
        RemoteFile("x_train.npy", "31e8388b56b568b31fb6af03c04721ce6dce3b1b3520d992b055717357473ebf"),
        RemoteFile("y_train.npy", "c718026182802e01693cbbad83b2af62a4e717da302e71815ac77fdbed4c5dde"),
        RemoteFile("x_test.npy", "25734fe56cf8192d45ffebe40b0ff5d0027a5295db6156b70600b9c3490bf575"),
        RemoteFile("y_test.npy", "4134144e011c5abc45fc2a1f8fcad9556a4addd3bab819f191c3245d7018c243"),
    ),
    reader="pipeline.data.sequences:read_irregular",
    modality="sequence",
    fields=(FieldSpec("input", "float32", (2, 20), "kept values (row 0) and the time since the previous kept "
                                                   "sample (row 1)"),
            FieldSpec("label", "int64", (), "class")),
    mirror_env="MNIST1D_IRREGULAR_DIR",
    generator="pipeline.data.sequences:generate_irregular",
    derived_from=("mnist1d",),
    fix_hint="it is generated from mnist1d: run `pipeline fetch mnist1d` first",
)

MACKEY_GLASS = DatasetSource(
    name="mackey_glass",
    description="Mackey-Glass series (tau 17), generated by reservoirpy: windows of 100 steps, the next value "
                "at each step to forecast; 10k training steps, then 2k test steps",
    files=(
        RemoteFile("x_train.npy", "6ee5614215c39d0083d0d8b8d83b130e50611be2375cc0e820e3b640af62f0db"),
        RemoteFile("y_train.npy", "d7c84e537ea5520f7cb8413479905173aa41ba33bf341a858837469ee38bc39c"),
        RemoteFile("x_test.npy", "55ccdca848ba0e691a0084bf53ac74114486200893285969b997325f480e0b2d"),
        RemoteFile("y_test.npy", "a54385fa0ed06aff2ab94a19759a605f542bb301ac06b15e92414533cf76f1d5"),
    ),
    reader="pipeline.data.sequences:read_mackey_glass",
    modality="series",
    fields=(FieldSpec("input", "float32", (1, 100), "the series over 100 steps"),
            FieldSpec("target", "float32", (1, 100), "the next value at each of those steps")),
    mirror_env="MACKEY_GLASS_DIR",
    generator="pipeline.data.sequences:generate_mackey_glass",
    fix_hint="install the generator (pip install reservoirpy)",
)

def _moving_fmnist(name: str, side: int, description: str, sha256s: tuple[str, str, str, str]) -> DatasetSource:
    """A Moving Fashion-MNIST variant (pipeline.data.video.CANVASES[name]): its four files' sha256s
    in the order x_train, y_train, x_test, y_test."""
    names = ("x_train.npy", "y_train.npy", "x_test.npy", "y_test.npy")
    return DatasetSource(
        name=name,
        description=description,
        files=tuple(RemoteFile(file, sha) for file, sha in zip(names, sha256s, strict=True)),
        reader="pipeline.data.video:read",
        modality="video",
        fields=(FieldSpec("input", "uint8", (20, 1, side, side), "20 grey frames"),
                FieldSpec("labels", "int64", (2,), "the classes of the two moving items")),
        mirror_env=f"{name.upper()}_DIR",
        generator=f"pipeline.data.video:generate_{side}",
        derived_from=("fashion_mnist",),
        fix_hint="it is generated from fashion_mnist: run `pipeline fetch fashion_mnist` first",
    )


MOVING_FMNIST = _moving_fmnist(
    "moving_fmnist", 64,
    "Moving Fashion-MNIST: 3000/500 sequences of 20 frames on a 64x64 canvas, two Fashion-MNIST items moving at "
    "constant velocity and bouncing off the edges (training items from the training split, test items from the "
    "test split), generated",
    ("7b6d57794639316769e86be24cbbd1eeb6bda35e275e01923d10b824f2bad9fc",
     "b8418bc0f9dbb3c7b2ec904d507d43ebb35e68de6fc1feb470f6651fe83c81e7",
     "52430f4a349d5b311f2edcf2cd99f43ab804c2f8a4682d2e51cbf9635c8231c1",
     "b4382d906a87da70fea553821dc2842e0c0e5c9dcf93981180e751f3fa4a13dd"))

MOVING_FMNIST_32 = _moving_fmnist(
    "moving_fmnist_32", 32,
    "Moving Fashion-MNIST, the quick variant: 3000/500 sequences of 20 frames on a 32x32 canvas, items shrunk to "
    "14x14, generated",
    ("19db1704c85e638a312db6996d219e7cbb94bd2a8dcc15c69a9402d79080633e",
     "b8418bc0f9dbb3c7b2ec904d507d43ebb35e68de6fc1feb470f6651fe83c81e7",
     "e13ad3a57172c7f8622b836dcb548e9e3fe724e001fd90d0e4cdd15d2c3038f2",
     "b4382d906a87da70fea553821dc2842e0c0e5c9dcf93981180e751f3fa4a13dd"))

WORDNET_CORPUS = DatasetSource(
    name="wordnet_corpus",
    description="The vokenization chain's text: WordNet 3.0's glosses and example sentences (all four parts of "
                "speech; no definition of a wordnet_supersense test synset) and 30k scene descriptions, shuffled, 2% "
                "for test, as ids of the project's WordPiece tokenizer (4096 ids, trained on the training split: "
                "tokenizer.json), 32 tokens; generated",
    files=(
        RemoteFile("tokenizer.json", "cc478530dc42205eb1145340957174e8d2049c2826884f218fcbddc6580a228d"),
        RemoteFile("x_train.npy", "dc5d9532785f33775adbac63c054d84e07afba23a3e84718226f3dbb0b2d069e"),
        RemoteFile("w_train.npy", "08c2f9c42836882af3c8c3e6ff03df10fff4efdef899f7839b260e454bfa5fcc"),
        RemoteFile("x_test.npy", "12105db30a96f93727619dbabcc7396b5b28abcd09355b5d02f17835ab8ade4d"),
        RemoteFile("w_test.npy", "b85b0598a7e40bf39c00004315ac081cb051704522507910e61a4251e0d800f7"),
    ),
    reader="pipeline.data.voken:read_corpus",
    modality="text",
    fields=(FieldSpec("input", "int64", (32,), "token ids: [CLS] sentence [SEP], cut to fit, padded with [PAD]"),
            FieldSpec("word_class", "int64", (32,), "per token, the Fashion-MNIST class whose name or synonym it "
                                                    "is (part of); -1 for any other token")),
    mirror_env="WORDNET_CORPUS_DIR",
    generator="pipeline.data.voken:generate_corpus",
    fix_hint="install Debian's wordnet-base (apt-get install wordnet-base), or set WORDNET_DIR to a folder holding "
             "WordNet 3.0's data.* files",
)

FMNIST_SCENES = DatasetSource(
    name="fmnist_scenes",
    description="Captioned Fashion-MNIST scenes: 20000/2000 pictures of 1-4 items (large or small, light or dark, "
                "left/right/top/bottom/centre) on a 56x56 black canvas, training items from the training split, test "
                "items from the test split, each with a caption naming every item's class in varied words (WordNet "
                "synonyms); generated",
    files=(
        RemoteFile("x_train.npy", "9a20304ed991524e3f94740e482733de7d5b903d20979a90801ef21c7d7e2df5"),
        RemoteFile("t_train.npy", "59e8743c2b0b649a7ff969e7748f3a45af91db9fbb70008564da33dbcb5e4727"),
        RemoteFile("w_train.npy", "7ffdd5e85d60956840ea6873597aa40c9db01cc4038a38ef97e312946d4c3ca4"),
        RemoteFile("i_train.npy", "dc25d0ec40d156ba559b68793c9bc4c8bb656b3008bca67381a27dc0a55ff34c"),
        RemoteFile("x_test.npy", "130166e1dff550427429f5b0303e04ee909f369d58dcf10701f147c16bfbdb7d"),
        RemoteFile("t_test.npy", "5e143003fa2dc468aeef9e7e50de8466e349431ca61a5603870f3c9ada6858cc"),
        RemoteFile("w_test.npy", "4f6e8b915cd890eebafc6f5bcd3dc6a8059b93ce2ec945f893d6784449b5ee09"),
        RemoteFile("i_test.npy", "b2b8b173eb6381986e3736f6145d5eb7a8f8b74c7b5ba232504c0b0429f5e68d"),
    ),
    reader="pipeline.data.voken:read_scenes",
    modality="image-text",
    fields=(FieldSpec("input", "uint8", (1, 56, 56), "grey picture"),
            FieldSpec("tokens", "int64", (24,), "caption token ids: [CLS] caption [SEP], padded with [PAD]"),
            FieldSpec("word_class", "int64", (24,), "per caption token, the class it names (part of); -1 for none"),
            FieldSpec("items", "int64", (4,), "the classes of the scene's items; -1 after the last")),
    mirror_env="FMNIST_SCENES_DIR",
    generator="pipeline.data.voken:generate_scenes",
    derived_from=("fashion_mnist", "wordnet_corpus"),
    fix_hint="it is generated from fashion_mnist with wordnet_corpus's tokenizer: run `pipeline fetch fashion_mnist` "
             "and `pipeline fetch wordnet_corpus` first",
)

WORDNET_SUPERSENSE = DatasetSource(
    name="wordnet_supersense",
    description="WordNet noun supersenses: a noun synset's definition (32 tokens) labelled with its lexicographer "
                "file (26 classes); 20000/5000 synsets sampled, the test synsets a fixed ~10% by offset whose "
                "definitions wordnet_corpus leaves out; generated",
    files=(
        RemoteFile("x_train.npy", "1e23ae8147b0d31c1e441ac31745888b1f8fd08860fa019c7f54b5fdf39e62a7"),
        RemoteFile("y_train.npy", "fe7240918d66b955f7a4817bdc6c808ab0deec18321e32ead84f7a597b8118e5"),
        RemoteFile("x_test.npy", "e7294f4511b8008e93b5b4dbedd16c0b14d92b0f0e5c67a393f770fa2577d9e9"),
        RemoteFile("y_test.npy", "104641370451660fab317e3755c1351fd8fc390c800301368e6bd1c1e2012f69"),
    ),
    reader="pipeline.data.voken:read_supersense",
    modality="text",
    fields=(FieldSpec("input", "int64", (32,), "definition token ids: [CLS] definition [SEP], padded"),
            FieldSpec("label", "int64", (), "supersense")),
    mirror_env="WORDNET_SUPERSENSE_DIR",
    generator="pipeline.data.voken:generate_supersense",
    derived_from=("wordnet_corpus",),
    fix_hint="it is generated from WordNet with wordnet_corpus's tokenizer: install wordnet-base (apt-get install "
             "wordnet-base) and run `pipeline fetch wordnet_corpus` first",
)

GROUNDED_FACTS = DatasetSource(
    name="grounded_facts",
    description="Grounded facts: sentences comparing two clothing classes' brightness or size (16 tokens), true or "
                "false by the class statistics of Fashion-MNIST's training images, half of them true; each test "
                "sentence names one of 3 classes (seeded) that no training sentence names; generated",
    files=(
        RemoteFile("x_train.npy", "9e01d0741ae30d46f290ac2da72588fb840bfe11fdc186730dd6c3d947c25610"),
        RemoteFile("y_train.npy", "79fb55fdb55ead0db4e0910fbb7bab1c8820d8d7cc08a888ed1a14dc9f2fb395"),
        RemoteFile("x_test.npy", "bb15b1318bb3b5a59491f842932f0eb24d23640b0ec3a6ff87c74b3068f60fc6"),
        RemoteFile("y_test.npy", "7f9d5ed2a464dcea9e46933ae4def4235a4d1c4a1c3a2c00308a3bb1178f58e1"),
    ),
    reader="pipeline.data.voken:read_facts",
    modality="text",
    fields=(FieldSpec("input", "int64", (16,), "sentence token ids: [CLS] sentence [SEP], padded"),
            FieldSpec("label", "int64", (), "0 false, 1 true")),
    mirror_env="GROUNDED_FACTS_DIR",
    generator="pipeline.data.voken:generate_facts",
    derived_from=("fashion_mnist", "wordnet_corpus"),
    fix_hint="it is generated from fashion_mnist with wordnet_corpus's tokenizer: run `pipeline fetch fashion_mnist` "
             "and `pipeline fetch wordnet_corpus` first",
)

DATASETS: dict[str, DatasetSource] = {
    source.name: source for source in (FASHION_MNIST, MNIST1D, MNIST1D_IRREGULAR, MACKEY_GLASS, MOVING_FMNIST,
                                       MOVING_FMNIST_32, WORDNET_CORPUS, FMNIST_SCENES, WORDNET_SUPERSENSE,
                                       GROUNDED_FACTS)}
