"""Data hygiene over lists of texts: exact and near deduplication, n-gram decontamination.

A text is one training example's full text (prompt + "\\n" + completion). Every function
compares *normalised* texts (see :func:`normalise`) and words are the space-separated tokens
of a normalised text. All functions are pure and deterministic; results are lists of indices
into the input, ascending.
"""

from __future__ import annotations

import hashlib
import unicodedata
from collections.abc import Iterable, Iterator, Sequence

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc


def normalise(text: str) -> str:
    """Unicode NFKC, lowercase, every whitespace run collapsed to one space, stripped."""
    if text.isascii():  # ASCII is NFKC already; skip the split/join when nothing to collapse
        text = text.lower().replace("\n", " ")
        # printable ASCII has exactly one whitespace character: the space
        if text.isprintable() and "  " not in text and text[:1] != " " and text[-1:] != " ":
            return text
        return " ".join(text.split())
    return " ".join(unicodedata.normalize("NFKC", text).lower().split())


def _digest(text: str) -> bytes:
    return hashlib.blake2b(normalise(text).encode("utf-8", "surrogatepass"),
                           digest_size=16).digest()


def exact_duplicates(texts: Sequence[str]) -> list[int]:
    """Indices of texts whose normalised form occurred earlier (the first occurrence is kept).

    Holds one 128-bit BLAKE2b digest per distinct text, not the texts themselves.
    """
    seen: set[bytes] = set()
    dups = []
    for i, text in enumerate(texts):
        key = _digest(text)
        if key in seen:
            dups.append(i)
        else:
            seen.add(key)
    return dups


def _shingles(text: str, ngram: int) -> list[bytes]:
    words = normalise(text).encode("utf-8", "surrogatepass").split(b" ")
    if len(words) < ngram:
        return [b" ".join(words)]
    return [b" ".join(words[i:i + ngram]) for i in range(len(words) - ngram + 1)]


def near_duplicates(texts: Sequence[str], threshold: float = 0.85, num_perm: int = 128,
                    ngram: int = 5, seed: int = 0) -> list[int]:
    """Indices of texts whose word ``ngram``-shingle set is near a text kept before them.

    MinHash-LSH (datasketch): a text is a duplicate when LSH finds an earlier *kept* text
    whose estimated Jaccard similarity is at least ``threshold``; otherwise it is kept.
    So the first text of each cluster is kept and every dropped text has a kept near copy.
    Texts shorter than ``ngram`` words are one shingle (the whole text).
    """
    from datasketch import LeanMinHash, MinHash, MinHashLSH

    lsh = MinHashLSH(threshold=threshold, num_perm=num_perm)
    kept: dict[int, LeanMinHash] = {}
    dups = []
    shingled = (_shingles(text, ngram) for text in texts)
    for i, sketch in enumerate(MinHash.generator(shingled, num_perm=num_perm, seed=seed)):
        lean = LeanMinHash(sketch)
        if any(lean.jaccard(kept[j]) >= threshold for j in lsh.query(lean)):
            dups.append(i)
        else:
            lsh.insert(i, lean, check_duplication=False)
            kept[i] = lean
    return dups


# Window hashes: every vocabulary word gets a random 64-bit value v, and the word window
# w_0..w_{L-1} hashes to sum_j v(w_j) * B**j mod 2**64. With prefix sums S of v(w_k) * B**k,
# the window starting at k is (S[k+L] - S[k]) * B**-k (B is odd, so invertible mod 2**64):
# a handful of vectorised operations per word whatever the window length.
_BASE = 0x9E3779B97F4A7C15  # odd
_VALUE_SEED = 0x5EED
_MAX_TABLE_BITS = 26


class Decontaminator:
    """Finds training texts that share a word n-gram with evaluation texts.

    The eval grams are all word ``n``-grams of each normalised eval text; an eval text of
    1 to ``n - 1`` words contributes its whole word sequence as one (shorter) gram, and an
    empty one contributes nothing. A training text is contaminated when any eval gram occurs
    in it as a contiguous run of words (so a training text shorter than ``n`` words can only
    be caught by a short eval text).

    Exact: windows are matched by 64-bit hash through a bit-table prefilter and a sorted
    array, and every hash hit is confirmed by comparing the words themselves.
    """

    def __init__(self, eval_texts: Iterable[str], n: int = 13, batch_size: int = 8192) -> None:
        if n < 1:
            raise ValueError(f"n must be at least 1, got {n}")
        self.n = n
        self.batch_size = batch_size
        vocab: dict[bytes, int] = {}
        ids: list[int] = []
        lengths: list[int] = []
        for text in eval_texts:
            words = normalise(text).encode("utf-8", "surrogatepass").split()
            ids.extend(vocab.setdefault(w, len(vocab)) for w in words)
            lengths.append(len(words))
        self._vocab = pa.array(list(vocab), type=pa.large_binary())
        self._missing = len(vocab)  # id of every word the eval texts lack
        rng = np.random.default_rng(_VALUE_SEED)
        self._values = rng.integers(0, 2**64 - 1, size=len(vocab) + 1, dtype=np.uint64,
                                    endpoint=True)
        self._pow = np.ones(1, dtype=np.uint64)
        self._inv = np.ones(1, dtype=np.uint64)
        self._eval_ids = np.asarray(ids, dtype=np.int64)
        self._grams = self._index_eval(np.asarray(lengths, dtype=np.int64))
        total = sum(len(h) for h, _ in self._grams.values())
        self._table_bits = min(_MAX_TABLE_BITS, max(16, (32 * max(total, 1)).bit_length()))
        self._table = np.zeros(1 << self._table_bits, dtype=bool)
        for hashes, _ in self._grams.values():
            self._table[hashes >> np.uint64(64 - self._table_bits)] = True

    def _index_eval(self, lengths: np.ndarray) -> dict[int, tuple[np.ndarray, np.ndarray]]:
        """Gram length -> (sorted window hashes, start of each window in ``_eval_ids``)."""
        prefix = self._prefix(self._eval_ids)
        starts = np.concatenate([[0], np.cumsum(lengths)[:-1]]).astype(np.int64)
        grams = {}
        for size in sorted({min(int(k), self.n) for k in lengths if k > 0}):
            if size == self.n:
                owner = np.repeat(np.arange(len(lengths)), lengths)
                first = np.flatnonzero(self._windows(prefix, owner, size)[1])
            else:
                first = starts[lengths == size]
            hashes = self._hash_at(prefix, first, size)
            order = np.argsort(hashes, kind="stable")
            grams[size] = (hashes[order], first[order])
        return grams

    def _powers(self, size: int) -> tuple[np.ndarray, np.ndarray]:
        """B**k and B**-k mod 2**64 for k < size (grown on demand, kept for reuse)."""
        if len(self._pow) < size:
            size = max(size, 2 * len(self._pow))
            self._pow, self._inv = (np.ones(size, dtype=np.uint64) for _ in range(2))
            np.cumprod(np.full(size - 1, _BASE, dtype=np.uint64), out=self._pow[1:])
            np.cumprod(np.full(size - 1, pow(_BASE, -1, 2**64), dtype=np.uint64),
                       out=self._inv[1:])
        return self._pow, self._inv

    def _prefix(self, ids: np.ndarray) -> np.ndarray:
        powers, _ = self._powers(len(ids) + 1)
        prefix = np.zeros(len(ids) + 1, dtype=np.uint64)
        np.cumsum(self._values[ids] * powers[:len(ids)], out=prefix[1:])
        return prefix

    def _hash_at(self, prefix: np.ndarray, starts: np.ndarray, size: int) -> np.ndarray:
        _, inverse = self._powers(len(prefix))
        return (prefix[starts + size] - prefix[starts]) * inverse[starts]

    def _windows(self, prefix: np.ndarray, owner: np.ndarray,
                 size: int) -> tuple[np.ndarray, np.ndarray]:
        """Hashes and starts of all ``size``-word windows that lie inside one text."""
        count = len(owner) - size + 1
        if count <= 0:
            empty = np.zeros(0, dtype=np.int64)
            return empty.astype(np.uint64), empty
        _, inverse = self._powers(len(prefix))
        hashes = (prefix[size:] - prefix[:count]) * inverse[:count]
        inside = owner[:count] == owner[size - 1:]
        return hashes, inside

    def contaminated(self, texts: Sequence[str]) -> list[int]:
        """Indices of ``texts`` that contain at least one eval gram."""
        found: list[int] = []
        for begin in range(0, len(texts), self.batch_size):
            batch = texts[begin:begin + self.batch_size]
            found.extend(begin + i for i in self._contaminated_batch(batch))
        return found

    def _word_ids(self, texts: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
        """Eval-vocabulary ids of the words of each normalised text, and words per text."""
        normalised = [normalise(t) for t in texts]
        try:
            array = pa.array(normalised, type=pa.large_string()).cast(pa.large_binary())
        except (UnicodeEncodeError, pa.ArrowException):  # lone surrogates
            array = pa.array([t.encode("utf-8", "surrogatepass") for t in normalised],
                             type=pa.large_binary())
        words = pc.split_pattern(array, b" ")  # "" -> [""], a word no eval gram has
        ids = pc.index_in(words.flatten(), value_set=self._vocab).fill_null(self._missing)
        lengths = np.diff(words.offsets.to_numpy())
        return ids.to_numpy().astype(np.int64), lengths

    def _contaminated_batch(self, texts: Sequence[str]) -> Iterator[int]:
        if not self._grams or not texts:
            return iter(())
        ids, lengths = self._word_ids(texts)
        owner = np.repeat(np.arange(len(texts)), lengths)
        prefix = self._prefix(ids)
        shift = np.uint64(64 - self._table_bits)
        hits: dict[int, list[tuple[int, int]]] = {}
        for size in self._grams:
            hashes, inside = self._windows(prefix, owner, size)
            starts = np.flatnonzero(inside & self._table[hashes >> shift])
            sorted_hashes, _ = self._grams[size]
            slot = np.searchsorted(sorted_hashes, hashes[starts])
            slot[slot == len(sorted_hashes)] = 0
            for start in starts[sorted_hashes[slot] == hashes[starts]]:
                hits.setdefault(int(owner[start]), []).append((int(start), size))
        return iter(sorted(t for t, spots in hits.items()
                           if any(self._confirmed(ids, prefix, s, k) for s, k in spots)))

    def _confirmed(self, ids: np.ndarray, prefix: np.ndarray, start: int, size: int) -> bool:
        """Whether the window's words equal those of an eval gram with the same hash."""
        sorted_hashes, firsts = self._grams[size]
        key = self._hash_at(prefix, np.array([start]), size)
        lo, hi = np.searchsorted(sorted_hashes, key[0], side="left"), \
            np.searchsorted(sorted_hashes, key[0], side="right")
        window = ids[start:start + size]
        return any(np.array_equal(window, self._eval_ids[f:f + size]) for f in firsts[lo:hi])
