"""pycode: a character-level corpus of real text, offline and deterministic: Python standard library modules.

The files are read from the running interpreter's own standard library (present wherever Python is), each checked
against the sha256 recorded here, so every machine trains on the same characters or refuses with the file's name.
Whole files go to one side of the split: the held-out modules are text the model never saw.
"""

from __future__ import annotations

import hashlib
import sysconfig
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import torch

from .data import Dataset

# Python 3.11.7's standard library (the project's interpreter and the Dockerfile's python:3.11 line).
TRAIN_FILES = {
    "heapq.py": "6d43277e5c76fc0f073cd388fcff852d14d068f6bb6d4886c340f8b75a1229a9",
    "string.py": "24aeae1f0526250f442022022bf98df9a823b1cb330543ee79e70e44907462e9",
    "fnmatch.py": "6683da36e47af523f3f41e18ad244d837783e19e98911cc0b7415dea81494ebc",
    "queue.py": "f6c37fc37cd7440979f7d22d40ee818fa3b714c573610c08fa52911d541193f0",
    "numbers.py": "6d70991643a109e9c99e94d6ea2734a995fa8e89114a70ea09737413fa9ae292",
    "reprlib.py": "264433cc232332db871666b3bb6e4c2cb97b092cb8d5056a45ec2e53daea2b1c",
    "copy.py": "27dcfc53a4b9d4fbc3d90c74e549eb6eca9301524d6d2fbff9a6589cf51b6fd5",
    "abc.py": "e558702a95cdce3febd289da021715d2b92bc43995b8a1bc58dfa1c3d8010287",
    "shlex.py": "42ab6060f316e121e374e6621d8c1c98b8db323903c3df289a810c45a8ae46a7",
    "pprint.py": "0b67dbc8af449d8ced3acd9df902e98c2dbc56c8f2a7a181c51cc72768db621f",
    "colorsys.py": "d9800f8e81d46e63ca6f2e7d6ac5f344d85afb92c3cf6d103b5f977f1ad66ac2",
    "bisect.py": "e5b2ff166f48a06e70ae831d8c9b47283fcd0c254306eee12d3dae9c55e11526",
    "calendar.py": "b3b140864fd122a575ffcc9342b824fbe4f8a38fdf3f4fcd964f26e52725358f",
    "fractions.py": "b11e850e354808b882d13a70a911c29accd1dbdd41757566704e3b7206c74edb",
    "contextlib.py": "d732c045bc7450997f97b2f79cfdb1546b68d2655e89ab3170f3b19b3930d83c",
    "functools.py": "6d80018a3fa9fed44c5b78f881987ee3ab3fb1238b077b4e6dcb4b76da7db73b",
}
HELD_OUT_FILES = {
    "textwrap.py": "62867e40cdea6669b361f72af4d7daf0359f207c92cbeddfc7c7506397c1f31c",
    "sched.py": "edfb309483d7cb05e06ad86d1fdeb819629f71402dc6710a1bec36c7afcaac50",
    "graphlib.py": "7bd338c5a475d1101064603d3baa5507446d3c5e73f741f6d6e77c6204c1eb65",
}
UNKNOWN = "\x00"  # every character outside the vocabulary (a tab, a non-ASCII letter) reads as this one
VOCAB = "\n" + "".join(chr(c) for c in range(32, 127)) + UNKNOWN  # printable ASCII and newline: 97 characters
VOCAB_SIZE = len(VOCAB)
TEST_WINDOWS = 128  # held-out windows evaluated at each evaluation (~8k characters at context 64)
_INDEX = {c: i for i, c in enumerate(VOCAB)}


class CorpusError(RuntimeError):
    """A corpus file is missing or differs from the one recorded: the data would not be the lab's."""


def stdlib_dir() -> Path:
    return Path(sysconfig.get_paths()["stdlib"])


def read_checked(name: str, sha256: str, folder: Path | None = None) -> str:
    """The file's text, after checking its bytes against ``sha256``; CorpusError naming the file otherwise."""
    path = (folder or stdlib_dir()) / name
    try:
        raw = path.read_bytes()
    except OSError as e:
        raise CorpusError(f"pycode: cannot read {path} ({e.strerror or e})") from None
    got = hashlib.sha256(raw).hexdigest()
    if got != sha256:
        raise CorpusError(f"pycode: {path} has sha256 {got[:12]}…, expected {sha256[:12]}… (the corpus is Python "
                          "3.11.7's standard library; this interpreter's copy differs)")
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

