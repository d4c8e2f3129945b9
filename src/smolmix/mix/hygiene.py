"""Data hygiene over lists of texts: exact and near deduplication, n-gram decontamination.

A text is one training example's full text (prompt + "\\n" + completion). Every function
compares *normalised* texts (see :func:`normalise`) and words are the space-separated tokens
of a normalised text. All functions are pure and deterministic; results are lists of indices
into the input, ascending.
"""

from __future__ import annotations

import unicodedata
import zlib
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import TypeVar

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from smolmix.core.pool import available_cores

T = TypeVar("T")


def normalise(text: str) -> str:
    """Unicode NFKC, lowercase, every whitespace run collapsed to one space, stripped."""
    if text.isascii():  # ASCII is NFKC already; skip the split/join when nothing to collapse
        text = text.lower().replace("\n", " ")
        # printable ASCII has exactly one whitespace character: the space
        if text.isprintable() and "  " not in text and text[:1] != " " and text[-1:] != " ":
            return text
        return " ".join(text.split())
    return " ".join(unicodedata.normalize("NFKC", text).lower().split())


def exact_duplicates(texts: Sequence[str]) -> list[int]:
    """Indices of texts whose normalised form occurred earlier (the first occurrence is kept).

    Holds one hash and one index per distinct text, not the texts: a text whose hash was
    seen is compared with the earlier texts of that hash, so collisions cannot drop it.
    """
    first: dict[int, int | list[int]] = {}  # hash -> index of its first text (a list if several)
    dups = []
    for i, text in enumerate(texts):
        key = normalise(text)
        seen = first.setdefault(hash(key), i)
        if seen == i:
            continue
        earlier = seen if isinstance(seen, list) else [seen]
        if any(normalise(texts[j]) == key for j in earlier):
            dups.append(i)
        else:  # a hash collision between different texts: remember both
            first[hash(key)] = [*earlier, i]
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
    Texts shorter than ``ngram`` words are one shingle (the whole text). Shingles are
    hashed with CRC-32 (deterministic, twice as fast as datasketch's SHA-1 default).
    """
    # datasketch only for near-duplicate dedup: it imports scipy (about a second)
    from datasketch import LeanMinHash, MinHash, MinHashLSH

    # LSH only proposes candidates (each is checked), so weigh misses over false candidates
    lsh = MinHashLSH(threshold=threshold, num_perm=num_perm, weights=(0.1, 0.9))
    kept: dict[int, LeanMinHash] = {}
    dups = []
    shingled = (_shingles(text, ngram) for text in texts)
    sketches = MinHash.generator(shingled, num_perm=num_perm, seed=seed, hashfunc=zlib.crc32,
                                 scheme="affine32")  # datasketch 2's default, named: stable
    for i, sketch in enumerate(sketches):
        lean = LeanMinHash(sketch)
        if any(lean.jaccard(kept[j]) >= threshold for j in lsh.query(lean)):
            dups.append(i)
        else:
            lsh.insert(i, lean, check_duplication=False)
            kept[i] = lean
    return dups


class ArrowTexts(Sequence[str]):
    """A read-only sequence of strings backed by one Arrow string array (no Python copies).

    Slices stay Arrow; :func:`_split_words` reads an all-ASCII slice without converting it.
    """

    def __init__(self, array: pa.Array | pa.ChunkedArray) -> None:
        if isinstance(array, pa.ChunkedArray):
            array = array.combine_chunks()
        self.array = array

    def __len__(self) -> int:
        return len(self.array)

    def __getitem__(self, index):  # type: ignore[override]
        if isinstance(index, slice):
            start, stop, step = index.indices(len(self.array))
            if step != 1:
                return self.array.to_pylist()[index]
            return ArrowTexts(self.array.slice(start, max(0, stop - start)))
        return self.array[int(index)].as_py()

    def __iter__(self):
        for start in range(0, len(self.array), 8192):
            yield from self.array.slice(start, 8192).to_pylist()

    def take(self, indices: Sequence[int]) -> list[str]:
        """The texts at ``indices``, in that order, in one Arrow call."""
        return self.array.take(pa.array(indices, type=pa.int64())).to_pylist()


def texts_at(texts: Sequence[str], indices: Sequence[int]) -> list[str]:
    """``[texts[i] for i in indices]``, in one call when ``texts`` has a ``take`` method."""
    take = getattr(texts, "take", None)
    return take(indices) if take is not None else [texts[i] for i in indices]


def _split_words(texts: Sequence[str]) -> tuple[pa.Array, np.ndarray]:
    """The words of every normalised text (one flat binary array) and the count per text.

    ASCII texts are lowercased and split by Arrow kernels, which agree with :func:`normalise`
    except on the separators 0x1c-0x1f: texts with those, and non-ASCII texts, go through
    :func:`normalise` first (a normalised text splits the same either way).
    """
    if isinstance(texts, ArrowTexts) and pc.all(pc.string_is_ascii(texts.array)).as_py():
        # a fresh copy: a slice's buffers start at an offset the kernels below would misread
        array = pa.concat_arrays([texts.array.cast(pa.large_string())])
        data = np.frombuffer(array.buffers()[2], dtype=np.uint8) if len(array) else None
        if data is None or not np.any(data - np.uint8(0x1C) <= 3):
            words = pc.ascii_split_whitespace(pc.ascii_trim_whitespace(pc.ascii_lower(array)))
            return _flat_words(words.cast(pa.list_(pa.large_binary())))
    texts = list(texts)
    prep = [t if t.isascii() else normalise(t) for t in texts]
    try:
        array = pa.array(prep, type=pa.large_string())
    except (UnicodeEncodeError, pa.ArrowException):  # lone surrogates: all in Python
        encoded = [normalise(t).encode("utf-8", "surrogatepass") for t in texts]
        return _flat_words(pc.split_pattern(pa.array(encoded, type=pa.large_binary()), b" "))
    if array.buffers()[2] is not None:
        data = np.frombuffer(array.buffers()[2], dtype=np.uint8)
        odd = np.flatnonzero(data - np.uint8(0x1C) <= 3)
        if len(odd):
            offsets = np.frombuffer(array.buffers()[1], dtype=np.int64)
            for i in set(np.searchsorted(offsets, odd, side="right").tolist()):
                prep[i - 1] = normalise(texts[i - 1])
            array = pa.array(prep, type=pa.large_string())
    words = pc.ascii_split_whitespace(pc.ascii_trim_whitespace(pc.ascii_lower(array)))
    return _flat_words(words.cast(pa.list_(pa.large_binary())))


def _flat_words(words: pa.ListArray) -> tuple[pa.Array, np.ndarray]:
    """Flattened words and words per text, without the one "" an empty text splits into."""
    offsets = words.offsets.to_numpy()
    lengths = np.diff(offsets)
    flat = words.flatten()
    lone = np.flatnonzero(lengths == 1)
    empty = lone[np.asarray(pc.binary_length(flat.take(offsets[lone]))) == 0]
    if len(empty):
        keep = np.ones(len(flat), dtype=bool)
        keep[offsets[empty]] = False
        flat = flat.filter(pa.array(keep))
        lengths[empty] = 0
    return flat, lengths


# Window hashes: every vocabulary word gets a random 64-bit value v, and the word window
# w_0..w_{L-1} hashes to sum_j v(w_j) * B**j mod 2**64. With prefix sums S of v(w_k) * B**k,
# the window starting at k is (S[k+L] - S[k]) * B**-k (B is odd, so invertible mod 2**64):
# a handful of vectorised operations per word whatever the window length.
_BASE = 0x9E3779B97F4A7C15  # odd
_VALUE_SEED = 0x5EED
_MAX_FILTER_BITS = 30


class Decontaminator:
    """Finds training texts that share a word n-gram with evaluation texts.

    The eval grams are all word ``n``-grams of each normalised eval text; an eval text of
    1 to ``n - 1`` words contributes its whole word sequence as one (shorter) gram, and an
    empty one contributes nothing. A training text is contaminated when any eval gram occurs
    in it as a contiguous run of words (so a training text shorter than ``n`` words can only
    be caught by a short eval text).

    Exact: every window of a text is hashed (vectorised, in batches of ``batch_size`` texts),
    passed through a bit filter of the eval hashes (about 1.5 % false passes) and a sorted
    array of them, and a hash hit counts only once the words themselves are found equal.
    """

    def __init__(self, eval_texts: Iterable[str], n: int = 13, batch_size: int = 8192) -> None:
        if n < 1:
            raise ValueError(f"n must be at least 1, got {n}")
        self.n = n
        self.batch_size = batch_size
        words, lengths = _split_words(list(eval_texts))
        self._vocab = pc.unique(words)
        self._missing = len(self._vocab)  # the id of every word the eval texts lack
        rng = np.random.default_rng(_VALUE_SEED)
        self._values = rng.integers(0, 2**64 - 1, size=len(self._vocab) + 1, dtype=np.uint64,
                                    endpoint=True)
        self._table = (np.ones(1, dtype=np.uint64), np.ones(1, dtype=np.uint64))
        self._eval_ids = self._ids(words)
        self._grams = self._index_eval(lengths)
        count = sum(len(gram.hashes) for gram in self._grams.values())
        self._bits = min(_MAX_FILTER_BITS, max(16, (64 * count).bit_length()))
        self._filter = np.zeros(1 << (self._bits - 3), dtype=np.uint8)
        for gram in self._grams.values():
            slot = _top(gram.hashes, self._bits)
            np.bitwise_or.at(self._filter, slot >> 3, np.left_shift(1, slot & 7).astype(np.uint8))

    def _ids(self, words: pa.Array) -> np.ndarray:
        ids = pc.index_in(words, value_set=self._vocab).fill_null(self._missing)
        return ids.to_numpy()

    def _index_eval(self, lengths: np.ndarray) -> dict[int, _Grams]:
        """The eval grams by length."""
        prefix = self._prefix(self._values[self._eval_ids])
        starts = np.concatenate([[0], np.cumsum(lengths)[:-1]]).astype(np.int64)
        grams = {}
        for size in sorted({min(int(k), self.n) for k in lengths if k > 0}):
            if size == self.n:
                owner = np.repeat(np.arange(len(lengths)), lengths)
                first = np.flatnonzero(self._windows(prefix, owner, size)[1])
            else:
                first = starts[lengths == size]
            grams[size] = _Grams.build(self._hash_at(prefix, first, size), first)
        return grams

    def _powers(self, size: int) -> tuple[np.ndarray, np.ndarray]:
        """B**k and B**-k mod 2**64 for k < size (grown on demand, kept for reuse).

        Thread-safe: the pair is one attribute, replaced whole, never changed in place.
        """
        table = self._table
        if len(table[0]) < size:
            size = max(size, 2 * len(table[0]))
            table = (np.ones(size, dtype=np.uint64), np.ones(size, dtype=np.uint64))
            np.cumprod(np.full(size - 1, _BASE, dtype=np.uint64), out=table[0][1:])
            np.cumprod(np.full(size - 1, pow(_BASE, -1, 2**64), dtype=np.uint64),
                       out=table[1][1:])
            self._table = table
        return table

    def _prefix(self, values: np.ndarray) -> np.ndarray:
        """Prefix sums of ``values[k] * B**k``: what window hashes are computed from."""
        powers, _ = self._powers(len(values) + 1)
        prefix = np.zeros(len(values) + 1, dtype=np.uint64)
        np.cumsum(values * powers[:len(values)], out=prefix[1:])
        return prefix

    def _hash_at(self, prefix: np.ndarray, starts: np.ndarray,
                 size: int | np.ndarray) -> np.ndarray:
        _, inverse = self._powers(len(prefix))
        return (prefix[starts + size] - prefix[starts]) * inverse[starts]

    def _windows(self, prefix: np.ndarray, owner: np.ndarray,
                 size: int) -> tuple[np.ndarray, np.ndarray]:
        """Hashes of all ``size``-word windows, and whether each lies inside one text."""
        count = len(owner) - size + 1
        if count <= 0:
            return np.zeros(0, dtype=np.uint64), np.zeros(0, dtype=bool)
        _, inverse = self._powers(len(prefix))
        hashes = (prefix[size:] - prefix[:count]) * inverse[:count]
        inside = owner[:count] == owner[size - 1:]
        return hashes, inside

    def _maybe(self, hashes: np.ndarray) -> np.ndarray:
        """False where a hash is surely not an eval gram's (the bit filter)."""
        slot = _top(hashes, self._bits)
        return (self._filter[slot >> 3] >> (slot & 7).astype(np.uint8)) & np.uint8(1) != 0

    def contaminated(self, texts: Sequence[str], workers: int | None = None) -> list[int]:
        """Indices of ``texts`` that contain at least one eval gram (batches on threads)."""
        if not self._grams:
            return []

        def batch(begin: int) -> list[int]:
            words, lengths = _split_words(texts[begin:begin + self.batch_size])
            return [begin + i for i in self._contaminated_ids(self._ids(words), lengths)]

        return [i for found in _map_batches(batch, len(texts), self.batch_size, workers)
                for i in found]

    def _contaminated_ids(self, ids: np.ndarray, lengths: np.ndarray,
                          prefix: np.ndarray | None = None) -> list[int]:
        """Which texts (as word ids and words per text) contain an eval gram.

        ``prefix`` may come from other values for the words the eval texts lack.
        """
        owner = np.repeat(np.arange(len(lengths)), lengths)
        prefix = self._prefix(self._values[ids]) if prefix is None else prefix
        hits: dict[int, list[tuple[int, int]]] = {}
        for size, gram in self._grams.items():
            hashes, inside = self._windows(prefix, owner, size)
            starts = np.flatnonzero(self._maybe(hashes) & inside)
            for start in starts[gram.contains(hashes[starts])].tolist():
                hits.setdefault(int(owner[start]), []).append((start, size))
        return sorted(t for t, spots in hits.items()
                      if any(self._confirmed(ids, prefix, s, k) for s, k in spots))

    def _text_keys(self, prefix: np.ndarray, lengths: np.ndarray) -> np.ndarray:
        """One 64-bit hash per text of its word values (equal word sequences, equal keys)."""
        starts = np.concatenate([[0], np.cumsum(lengths)[:-1]]).astype(np.int64)
        return self._hash_at(prefix, starts, lengths)

    def _confirmed(self, ids: np.ndarray, prefix: np.ndarray, start: int, size: int) -> bool:
        """Whether the window's words equal those of an eval gram with the same hash."""
        key = self._hash_at(prefix, np.array([start]), size)[0]
        window = ids[start:start + size]
        return any(np.array_equal(window, self._eval_ids[f:f + size])
                   for f in self._grams[size].starts_of(key))


def scan(texts: Sequence[str], decontaminator: Decontaminator | None = None,
         workers: int | None = None) -> tuple[list[int], list[int]]:
    """Exact duplicates and contaminated texts, in one pass.

    The same as ``(exact_duplicates(texts), decontaminator.contaminated(texts))`` (no
    contaminated texts without a decontaminator) but faster than the two calls: each text is
    split into words once, by Arrow kernels, batches run on ``workers`` threads (default:
    the usable cores; the kernels release the GIL), and duplicates are found by hashing word
    sequences (hash hits are confirmed on the normalised texts).
    """
    dec = decontaminator if decontaminator is not None else Decontaminator([])

    def batch(begin: int) -> tuple[np.ndarray, list[int]]:
        words, lengths = _split_words(texts[begin:begin + dec.batch_size])
        encoded = pc.dictionary_encode(words)
        index = encoded.indices.to_numpy()
        known = dec._ids(encoded.dictionary)
        # words the eval texts lack get a value from hash() (salted, but fixed in a process)
        unknown = known == dec._missing
        hashed = [hash(w) for w in pc.filter(encoded.dictionary, unknown).to_pylist()]
        values = dec._values[known]
        values[unknown] = np.array(hashed, dtype=np.int64).view(np.uint64)
        prefix = dec._prefix(values[index])
        dirty = ([begin + i for i in dec._contaminated_ids(known[index], lengths, prefix)]
                 if dec._grams else [])
        return dec._text_keys(prefix, lengths), dirty

    results = _map_batches(batch, len(texts), dec.batch_size, workers)
    keys = np.concatenate([k for k, _ in results]) if results else np.zeros(0, np.uint64)
    return _verified_duplicates(texts, keys), [i for _, dirty in results for i in dirty]


def _map_batches(fn: Callable[[int], T], total: int, batch_size: int,
                 workers: int | None) -> list[T]:
    """``fn(begin)`` for each batch start in ``range(0, total, batch_size)``, in order."""
    starts = range(0, total, batch_size)
    workers = min(workers or available_cores(), len(starts))
    if workers <= 1:
        return [fn(begin) for begin in starts]
    with ThreadPoolExecutor(workers) as pool:
        return list(pool.map(fn, starts))


def _verified_duplicates(texts: Sequence[str], keys: np.ndarray) -> list[int]:
    """Texts whose key and normalised text equal an earlier text's."""
    order = np.argsort(keys, kind="stable")
    sorted_keys = keys[order]
    repeated = np.flatnonzero(sorted_keys[1:] == sorted_keys[:-1]) + 1
    groups = np.unique(np.concatenate([repeated - 1, repeated]))  # sorted positions in groups
    dups = []
    members: dict[int, list[int]] = {}
    for pos in groups.tolist():
        members.setdefault(int(sorted_keys[pos]), []).append(int(order[pos]))
    flat = [i for group in members.values() for i in group]
    normalised = dict(zip(flat, map(normalise, texts_at(texts, flat)), strict=True))
    for group in members.values():
        seen: set[str] = set()
        for i in group:  # ascending: a stable sort keeps equal keys in text order
            text = normalised[i]
            if text in seen:
                dups.append(i)
            seen.add(text)
    return sorted(dups)


def _top(hashes: np.ndarray, bits: int) -> np.ndarray:
    """The top ``bits`` bits of 64-bit hashes, as int64 (ready to index with)."""
    return (hashes >> np.uint64(64 - bits)).view(np.int64)


@dataclass(frozen=True)
class _Grams:
    """Eval gram hashes of one length, sorted, bucketed by their top bits for fast lookup."""

    hashes: np.ndarray  # uint64, sorted
    starts: np.ndarray  # where each gram starts in the eval word ids
    buckets: np.ndarray  # hashes[buckets[b]:buckets[b + 1]] have top bits b
    bits: int

    @classmethod
    def build(cls, hashes: np.ndarray, starts: np.ndarray) -> _Grams:
        order = np.argsort(hashes)
        bits = max(1, min(24, len(hashes).bit_length()))
        counts = np.bincount(_top(hashes, bits), minlength=1 << bits)
        buckets = np.concatenate([[0], np.cumsum(counts)])
        return cls(hashes[order], starts[order], buckets, bits)

    def contains(self, keys: np.ndarray) -> np.ndarray:
        """Whether each key is one of the hashes."""
        bucket = _top(keys, self.bits)
        pos, end = self.buckets[bucket], self.buckets[bucket + 1]
        found = np.zeros(len(keys), dtype=bool)
        while True:
            live = np.flatnonzero(pos < end)
            if not len(live):
                return found
            found[live] |= self.hashes[pos[live]] == keys[live]
            pos[live] += 1

    def starts_of(self, key: np.uint64) -> np.ndarray:
        """Where the grams with hash ``key`` start in the eval word ids."""
        return self.starts[np.searchsorted(self.hashes, key, "left"):
                           np.searchsorted(self.hashes, key, "right")]
