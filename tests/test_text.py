"""The pycode corpus (training/text.py): real text, checked file by file, split by whole files, windows whose
targets are the next characters."""

import hashlib
import math
import shutil

import pytest
import torch

from training import text as T


def test_the_vocabulary_is_printable_ascii_newline_and_one_unknown():
    assert T.VOCAB_SIZE == 97 == len(set(T.VOCAB))
    assert T.decode(T.encode("def f(x):\n\treturn 'é'")) == "def f(x):\n\x00return '\x00'"


def test_the_split_is_by_whole_files_and_the_text_is_each_side_joined():
    assert not set(T.TRAIN_FILES) & set(T.HELD_OUT_FILES)
    train, held = T.corpus()
    folder = T.corpus_dir()
    joined = "".join((folder / n).read_text(encoding="utf-8") for n in T.HELD_OUT_FILES)
    assert T.decode(held) == T.decode(T.encode(joined)) and len(held) == len(joined)
    assert len(train) > 200_000 and len(held) > 30_000


def test_a_changed_file_is_refused_naming_it(tmp_path):
    for name in T.TRAIN_FILES:
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(T.corpus_dir() / name, tmp_path / name)
    name = "optim/sgd.py"
    assert "class SGD(Optimizer)" in T.read_checked(name, T.TRAIN_FILES[name], tmp_path)
    (tmp_path / name).write_bytes((tmp_path / name).read_bytes() + b"\n")
    with pytest.raises(T.CorpusError, match="optim/sgd.py has sha256"):
        T.read_checked(name, T.TRAIN_FILES[name], tmp_path)
    with pytest.raises(T.CorpusError, match="cannot read"):
        T.read_checked("absent.py", hashlib.sha256(b"").hexdigest(), tmp_path)


def test_windows_target_the_next_character_and_a_seed_fixes_the_batches():
    ds = T.pycode(32)
    x, y = ds.sample(8, torch.Generator().manual_seed(3))
    assert x.shape == (8, 32) and y.shape == (8 * 32,) and x.dtype == y.dtype == torch.long
    assert torch.equal(x[:, 1:], y.view(8, 32)[:, :-1])  # each target is the following input
    x2, _ = ds.sample(8, torch.Generator().manual_seed(3))
    assert torch.equal(x, x2)
    text = T.decode(ds.text_train)
    assert T.decode(x[0]) in text
    assert ds.x_test.shape == (T.TEST_WINDOWS, 32) and ds.y_test.shape == (T.TEST_WINDOWS * 32,)
    assert ds.input_dim == ds.output_dim == T.VOCAB_SIZE and math.log(ds.output_dim) > 4.5
