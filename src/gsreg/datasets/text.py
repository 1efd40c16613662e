"""Character-level text every Python installation has: the standard library's own source.

:func:`stdlib_corpus` reads the ``.py`` files directly under the standard library's
folder (``os.path.dirname(os.__file__)``), sorted by name, until a byte budget is spent,
and splits them by file into training and validation text. :func:`encode` maps bytes to a
vocabulary of the printable ASCII characters plus one "other" token;
:func:`token_classes` labels each character of Python source as a digit, whitespace,
bracket, quote, keyword, identifier, operator or other.
"""

from __future__ import annotations

import keyword
import os
import re
import string
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .._checks import check_int

#: the vocabulary: ``string.printable`` (100 characters); index ``len(VOCAB)`` is "other"
VOCAB = string.printable
OTHER = len(VOCAB)
VOCAB_SIZE = len(VOCAB) + 1
#: the character classes of :func:`token_classes`, in label order
CLASSES = (
    "digit",
    "whitespace",
    "bracket",
    "quote",
    "keyword",
    "identifier",
    "operator",
    "other",
)
BRACKETS = frozenset("()[]{}")
QUOTES = frozenset("'\"")
OPERATORS = frozenset("+-*/%=<>!&|^~@:.,;")
_WORD = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_LOOKUP = np.full(256, OTHER, dtype=np.int64)
for _index, _char in enumerate(VOCAB):
    _LOOKUP[ord(_char)] = _index


@dataclass(frozen=True)
class TextCorpus:
    """Training and validation text, split by file.

    Attributes:
        train, val: the files' texts joined with newlines (str; bytes outside ASCII
            decode as U+FFFD, which :func:`encode` maps to "other").
        train_files, val_files: the file names, in reading order.
    """

    train: str
    val: str
    train_files: tuple[str, ...]
    val_files: tuple[str, ...]


def stdlib_folder() -> Path:
    """The folder of the standard library's ``.py`` files on this interpreter."""
    return Path(os.path.dirname(os.__file__))


def stdlib_corpus(max_bytes: int, val_every: int = 10, folder: Path | None = None) -> TextCorpus:
    """The ``.py`` files directly under ``folder`` (default :func:`stdlib_folder`),
    sorted by name, read whole until ``max_bytes`` bytes are read (the file that crosses
    the budget is the last). Every ``val_every``-th file (the 10th, 20th, ... read) goes
    to validation, the others to training. The same folder gives the same corpus."""
    check_int(max_bytes, "stdlib_corpus: max_bytes")
    check_int(val_every, "stdlib_corpus: val_every", 2)
    folder = stdlib_folder() if folder is None else Path(folder)
    files = sorted(p for p in folder.glob("*.py") if p.is_file())
    if not files:
        raise ValueError(f"stdlib_corpus: no .py files in {folder}")
    train, val, train_files, val_files = [], [], [], []
    total = 0
    for number, path in enumerate(files, start=1):
        data = path.read_bytes()
        text = data.decode("ascii", errors="replace")
        if number % val_every == 0:
            val.append(text)
            val_files.append(path.name)
        else:
            train.append(text)
            train_files.append(path.name)
        total += len(data)
        if total >= max_bytes:
            break
    if not val:
        raise ValueError(
            f"stdlib_corpus: max_bytes={max_bytes} read {len(train)} files, fewer than "
            f"val_every={val_every}; no validation file"
        )
    return TextCorpus("\n".join(train), "\n".join(val), tuple(train_files), tuple(val_files))


def encode(text: str) -> np.ndarray:
    """(len(text),) int64 token ids: a character of :data:`VOCAB` its index there, any
    other character :data:`OTHER`."""
    codes = np.frombuffer(text.encode("utf-32-le"), dtype=np.uint32).astype(np.int64)
    ids = np.full(len(codes), OTHER, dtype=np.int64)
    ascii_ = codes < 256
    ids[ascii_] = _LOOKUP[codes[ascii_]]
    return ids


def decode(ids: np.ndarray) -> str:
    """The text of token ids (N,); "other" becomes U+FFFD."""
    return "".join(VOCAB[i] if i < OTHER else "\ufffd" for i in np.asarray(ids).tolist())


def token_classes(text: str) -> np.ndarray:
    """(len(text),) int64 class of each character, an index into :data:`CLASSES`.

    Words (``[A-Za-z_][A-Za-z0-9_]*``) come first: the characters of a Python keyword
    (:func:`keyword.iskeyword`, soft keywords not included) are ``keyword``, of any other
    word ``identifier`` (so the ``1`` of ``x1`` is an identifier). Of the rest: digits,
    whitespace (space, tab, newline and the other characters of ``string.whitespace``),
    brackets ``()[]{}``, quotes ``'"``, operators and punctuation
    ``+-*/%=<>!&|^~@:.,;``; anything else (``#``, ``\\``, ``$``, non-ASCII, ...) is
    ``other``. The classes are lexical, without parsing strings or comments: a word inside
    a string is still a word.
    """
    labels = np.full(len(text), CLASSES.index("other"), dtype=np.int64)
    for position, char in enumerate(text):
        if char in string.digits:
            labels[position] = CLASSES.index("digit")
        elif char in string.whitespace:
            labels[position] = CLASSES.index("whitespace")
        elif char in BRACKETS:
            labels[position] = CLASSES.index("bracket")
        elif char in QUOTES:
            labels[position] = CLASSES.index("quote")
        elif char in OPERATORS:
            labels[position] = CLASSES.index("operator")
    for match in _WORD.finditer(text):
        kind = "keyword" if keyword.iskeyword(match.group()) else "identifier"
        labels[match.start() : match.end()] = CLASSES.index(kind)
    return labels


def windows(ids: np.ndarray, length: int, count: int, seed: int) -> np.ndarray:
    """``count`` windows of ``length`` consecutive ids (N,) at seeded random starts:
    (count, length) int64."""
    ids = np.asarray(ids)
    check_int(length, "windows: length")
    check_int(count, "windows: count")
    if len(ids) < length:
        raise ValueError(f"windows: the text has {len(ids)} ids, fewer than length={length}")
    starts = np.random.default_rng(seed).integers(0, len(ids) - length + 1, size=count)
    return np.stack([ids[s : s + length] for s in starts]).astype(np.int64)


def tiled_windows(ids: np.ndarray, length: int, count: int) -> np.ndarray:
    """The first ``count`` non-overlapping windows of ``length`` ids (N,), in text order:
    (count', length) with count' = min(count, N // length)."""
    ids = np.asarray(ids)
    check_int(length, "tiled_windows: length")
    check_int(count, "tiled_windows: count")
    n = min(count, len(ids) // length)
    if n == 0:
        raise ValueError(f"tiled_windows: the text has {len(ids)} ids, fewer than {length}")
    return ids[: n * length].reshape(n, length).astype(np.int64)
