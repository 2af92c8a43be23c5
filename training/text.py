"""pycode: a character-level corpus of real text, offline and deterministic: Python source files of the pinned torch.

The files are read from the installed torch package (torch==2.13.0, pinned in requirements.txt: the same bytes on
every machine that runs the lab, whatever its Python patch release), each checked against the sha256 recorded here,
so every machine trains on the same characters or refuses with the file's name. Whole files go to one side of the
split: the held-out modules are text the model never saw.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import torch

from .data import Dataset

# torch 2.13.0's own modules: ~246k characters to train on, ~33k held out.
TRAIN_FILES = {
    "nn/modules/activation.py": "116c0ef075470a794cccefd74f8b38af4fd8d93be3b6861bc11f28c4151c439a",
    "nn/modules/linear.py": "1961ad1a1f650e104b3c7f78d19af2d21bf977e7af6c3fdf2420aad563c9e202",
    "nn/modules/container.py": "73417ef19501a3e0fef8c6377ab660aac8c3e9b5034f3e652e6c6c91afd68bb8",
    "nn/modules/dropout.py": "2ac0b163bbdfa5c6c723fadc6637099bf8ee412e386c21502a1222edb68ce167",
    "nn/modules/normalization.py": "96284b63a2088c7d378716d5114eb5b6a1c072d479116170fcfd284c57e84b4f",
    "nn/modules/batchnorm.py": "b59a648fe5d87ea98f953840a75542e0cd1ef89bf98127c9f00b8ed5051f1e07",
    "optim/sgd.py": "33c98d8a8fc789697a7bfecbe7aaf39f6346c42fef935169402d05ea131a38e7",
    "optim/adam.py": "bde360b0bb9b7869f1cec04a3b41a90b8eabb84a613787d97b88d87f2f3ae1ec",
}
HELD_OUT_FILES = {
    "optim/rmsprop.py": "0f2d29411df558c824b85d0c3c4aecb9a41ca806099b3de10a495f1fe3d1024c",
    "nn/modules/flatten.py": "330f51bb10bfe15a94c080fb671b8179eba572812a001d7b66d1c66c37d04cb2",
    "nn/modules/distance.py": "cfbcd44f9fa42e2a3492ab7aaf71303600e998f0dca110ba41ab22943ff24ec9",
    "nn/modules/pixelshuffle.py": "378aea087fb60ef04a2c6e19a492c750db2ff18971dae4079bb571468a78096c",
}
UNKNOWN = "\x00"  # every character outside the vocabulary (a tab, a non-ASCII letter) reads as this one
VOCAB = "\n" + "".join(chr(c) for c in range(32, 127)) + UNKNOWN  # printable ASCII and newline: 97 characters
VOCAB_SIZE = len(VOCAB)
TEST_WINDOWS = 128  # held-out windows evaluated at each evaluation (~8k characters at context 64)
_INDEX = {c: i for i, c in enumerate(VOCAB)}


class CorpusError(RuntimeError):
    """A corpus file is missing or differs from the one recorded: the data would not be the lab's."""


def corpus_dir() -> Path:
    return Path(torch.__file__).parent


def read_checked(name: str, sha256: str, folder: Path | None = None) -> str:
    """The file's text, after checking its bytes against ``sha256``; CorpusError naming the file otherwise."""
    path = (folder or corpus_dir()) / name
    try:
        raw = path.read_bytes()
    except OSError as e:
        raise CorpusError(f"pycode: cannot read {path} ({e.strerror or e})") from None
    got = hashlib.sha256(raw).hexdigest()
    if got != sha256:
        raise CorpusError(f"pycode: {path} has sha256 {got[:12]}…, expected {sha256[:12]}… (the corpus is torch "
                          f"2.13.0's own source; this torch is {torch.__version__})")
    return raw.decode("utf-8")


def encode(text: str) -> torch.Tensor:
    """Characters → vocabulary indices (int64), anything outside the vocabulary → UNKNOWN's."""
    unk = _INDEX[UNKNOWN]
    return torch.tensor([_INDEX.get(c, unk) for c in text], dtype=torch.long)


def decode(ids) -> str:
    return "".join(VOCAB[int(i)] for i in ids)


@lru_cache(maxsize=2)
def corpus(folder: str | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """(train, held-out) character ids: each side's files joined in the recorded order. ~0.1 s, cached."""
    where = Path(folder) if folder else None
    train, held = ("".join(read_checked(n, h, where) for n, h in files.items())
                   for files in (TRAIN_FILES, HELD_OUT_FILES))
    return encode(train), encode(held)


def windows(text: torch.Tensor, starts: torch.Tensor, context: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Inputs (n, context) and next-character targets flattened to (n * context,), one window per start."""
    chunk = text[starts.unsqueeze(1) + torch.arange(context + 1)]  # (n, context + 1)
    return chunk[:, :-1], chunk[:, 1:].reshape(-1)


@dataclass
class TextDataset(Dataset):
    """Random windows of ``seq_len`` + 1 characters of the training text; the target of each is the next one."""

    text_train: torch.Tensor | None = None  # stays on the CPU: windows are cut there, the engine moves each batch

    def sample(self, batch_size: int, gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        starts = torch.randint(len(self.text_train) - self.seq_len, (batch_size,), generator=gen)
        return windows(self.text_train, starts, self.seq_len)


def pycode(context: int) -> TextDataset:
    """The corpus cut into windows of ``context`` characters. The split and the held-out windows (evenly spaced)
    are fixed by the file lists alone, whatever the seed."""
    train, held = corpus()
    starts = torch.linspace(0, len(held) - context - 1, TEST_WINDOWS).long()
    x_test, y_test = windows(held, starts, context)
    return TextDataset("pycode", VOCAB_SIZE, VOCAB_SIZE, "classification", True, x_test=x_test, y_test=y_test,
                       seq_len=context, text_train=train)

