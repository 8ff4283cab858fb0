"""CLIP's byte-pair-encoding tokenizer without torch: token ids as an int64 numpy array.

The algorithm of open_clip's ``SimpleTokenizer`` (OpenAI CLIP's, MIT licence) with its default
"lower" cleaning and truncation: ftfy and html clean-up, whitespace collapsed, lower case, split
with the same pattern, bytes mapped to printable characters, merges applied by rank, then
``<start_of_text> ... <end_of_text>`` padded with zeros to the context length. The vocabulary is
the merges file open_clip ships (``bpe_simple_vocab_16e6.txt.gz``); an ONNX export carries a copy,
so the web tier needs neither torch nor open_clip. tests/test_torch_free.py compares the ids with
open_clip's token for token.
"""

from __future__ import annotations

import gzip
import html
from functools import lru_cache
from pathlib import Path
from typing import Sequence

import numpy as np

VOCAB_FILE = "bpe_simple_vocab_16e6.txt.gz"
_MERGES = 49152 - 256 - 2  # the merges CLIP's vocabulary of 49408 ids was built with
_SPECIAL = ("<start_of_text>", "<end_of_text>")
_PATTERN = r"""<start_of_text>|<end_of_text>|'s|'t|'re|'ve|'m|'ll|'d|[\p{L}]+|[\p{N}]|[^\s\p{L}\p{N}]+"""


class ClipTokenizer:
    def __init__(self, vocab_path: Path | str, context_length: int = 77):
        import regex

        merges = [tuple(line.split()) for line in gzip.open(vocab_path).read().decode("utf-8").split("\n")[1 : _MERGES + 1]]
        symbols = list(_byte_symbols().values())
        vocab = symbols + [s + "</w>" for s in symbols] + ["".join(pair) for pair in merges] + list(_SPECIAL)
        self.encoder = {token: n for n, token in enumerate(vocab)}
        self.ranks = {pair: n for n, pair in enumerate(merges)}
        self.sot, self.eot = self.encoder[_SPECIAL[0]], self.encoder[_SPECIAL[1]]
        self.context_length = context_length
        self._pattern = regex.compile(_PATTERN, regex.IGNORECASE)
        self._cache = {token: token for token in _SPECIAL}

    def __call__(self, texts: Sequence[str] | str) -> np.ndarray:
        if isinstance(texts, str):
            texts = [texts]
        result = np.zeros((len(texts), self.context_length), dtype=np.int64)
        for row, text in enumerate(texts):
            ids = [self.sot, *self.encode(text), self.eot]
            if len(ids) > self.context_length:
                ids = ids[: self.context_length]
                ids[-1] = self.eot
            result[row, : len(ids)] = ids
        return result

    def encode(self, text: str) -> list[int]:
        byte_symbols = _byte_symbols()
        ids = []
        for piece in self._pattern.findall(_clean(text)):
            word = "".join(byte_symbols[b] for b in piece.encode("utf-8"))
            ids.extend(self.encoder[token] for token in self._bpe(word).split(" "))
        return ids

    def _bpe(self, token: str) -> str:
        if token in self._cache:
            return self._cache[token]
        word = (*token[:-1], token[-1] + "</w>")
        while len(word) > 1:
            pairs = set(zip(word, word[1:]))
            best = min(pairs, key=lambda pair: self.ranks.get(pair, float("inf")))
            if best not in self.ranks:
                break
            word = _merge(word, best)
        joined = " ".join(word)
        if len(self._cache) < 100_000:  # queries are open-ended: bound the memory
            self._cache[token] = joined
        return joined


def _merge(word: tuple[str, ...], pair: tuple[str, str]) -> tuple[str, ...]:
    """Every occurrence of ``pair`` in ``word`` joined into one symbol, left to right."""
    first, second = pair
    merged, i = [], 0
    while i < len(word):
        if word[i] == first and i < len(word) - 1 and word[i + 1] == second:
            merged.append(first + second)
            i += 2
        else:
            merged.append(word[i])
            i += 1
    return tuple(merged)


def _clean(text: str) -> str:
    import ftfy

    text = html.unescape(html.unescape(ftfy.fix_text(text))).strip()
    return " ".join(text.split()).lower()


@lru_cache(maxsize=1)
def _byte_symbols() -> dict[int, str]:
    """A printable character per byte, so BPE never sees whitespace or control characters."""
    printable = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
    codes = printable[:]
    extra = 0
    for b in range(256):
        if b not in printable:
            printable.append(b)
            codes.append(256 + extra)
            extra += 1
    return {b: chr(c) for b, c in zip(printable, codes)}


def open_clip_vocab_file() -> Path | None:
    """The vocabulary inside an installed open_clip (found without importing it: that imports torch)."""
    import importlib.util

    spec = importlib.util.find_spec("open_clip")
    for folder in (spec.submodule_search_locations or []) if spec else []:
        path = Path(folder) / VOCAB_FILE
        if path.is_file():
            return path
    return None
