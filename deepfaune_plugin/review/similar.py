"""Issue 34.5, review that learns: the review's pictures as unit vectors of the classifier's features, to find the
pictures most like one (`FeatureIndex.similar`) and to order the queue so each label teaches the most
(`LearnOrder`).

Memory stays bounded on a season: the features (float16, 1024 wide for DeepFaune's ViT-L) are read from the result
store in chunks of `CHUNK` files and each picture is kept as one float32 vector of `DIMS` numbers (100,000
pictures: 100,000 x 128 x 4 bytes = 51 MB, where the stored crops would take 200 MB as float16). The `DIMS`
directions are the leading right singular vectors of the first chunk's unit features (up to SAMPLE crops of 4,096
files in content-key order: content keys are hashes, so a fair sample of the season; an uncentred PCA):
the projection that keeps their inner products best in the least-squares sense, so cosine similarities change
little (benchmarks/RESULTS.md). Features `DIMS` wide or narrower are kept as they are.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Mapping, Sequence

import numpy as np

from ..store import read_features

DIMS = 128  # numbers kept per picture
SAMPLE = 8192  # pictures whose features choose the projection
CHUNK = 4096  # files read from the store at once
BLOCK = 4096  # rows of one matrix product (BLOCK x BLOCK float32: 64 MiB at most)
MAX_SIMILAR = 200  # the most pictures one request may ask for
BIN = 0.1  # margins closer than this count as "similar confidence" (then the least like the labelled come first)


def _unit(values: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(values, axis=1, keepdims=True)
    return np.divide(values, norms, out=np.zeros_like(values), where=norms > 0)


def projection(sample: np.ndarray, dims: int = DIMS) -> np.ndarray | None:
    """[width, dims] float32: the `dims` leading right singular vectors of `sample` (unit rows); None where the
    features are no wider than `dims` (kept as they are). Found by a randomised range finder (two power
    iterations over the sample's Gram matrix, a fixed seed: the same sample gives the same projection), which costs
    a fraction of a full eigendecomposition of the width x width matrix."""
    width = sample.shape[1]
    if width <= dims:
        return None
    gram = sample.T.astype(np.float64) @ sample.astype(np.float64)
    probe = np.random.default_rng(0).normal(size=(width, min(width, dims + 32)))
    for _ in range(3):
        probe, _ = np.linalg.qr(gram @ probe)
    values, vectors = np.linalg.eigh(probe.T @ gram @ probe)  # ascending eigenvalues
    return np.ascontiguousarray((probe @ vectors)[:, ::-1][:, :dims], dtype=np.float32)


@dataclass
class FeatureIndex:
    """One unit vector per picture of the review that has stored features (the mean of its crops' unit features:
    a video's frames, projected), by relpath; pictures with identical bytes share a row."""

    rows: dict[str, int]  # relpath -> row of `unit`
    unit: np.ndarray  # float32 [pictures, k], rows of length 1
    width: int = 0  # the stored features' width
    basis: np.ndarray | None = None  # [width, k] projection, None when kept as stored
    _listed: tuple | None = field(default=None, repr=False)  # (relpaths, their rows), made on the first query

    @property
    def nbytes(self) -> int:
        return int(self.unit.nbytes + (0 if self.basis is None else self.basis.nbytes))

    @classmethod
    def read(cls, store: Path, files: Mapping[str, tuple[str, str]]) -> "FeatureIndex":
        """The vectors of `files` (relpath -> (models fingerprint, content key)) from the store at `store`."""
        by_key: dict[tuple[str, str], list[str]] = {}
        for rel, key in files.items():
            by_key.setdefault(key, []).append(rel)
        groups: dict[str, list[str]] = {}
        for fingerprint, content in by_key:
            groups.setdefault(fingerprint, []).append(content)
        rows: dict[str, int] = {}
        parts: list[np.ndarray] = []
        basis: np.ndarray | None = None
        width, chosen, total = 0, False, 0
        for fingerprint, contents in sorted(groups.items()):
            contents.sort()  # content keys are hashes: the first chunk, which chooses the projection, is a fair sample
            for start in range(0, len(contents), CHUNK):
                got = read_features(store, fingerprint, contents[start:start + CHUNK])
                if not len(got):
                    continue
                crops = _unit(got.values.astype(np.float32))
                if not chosen:  # the first chunk with features chooses the projection (up to SAMPLE crops)
                    width, chosen = crops.shape[1], True
                    basis = projection(crops[:SAMPLE])
                elif crops.shape[1] != width:
                    continue  # another model's width cannot share the space: left without features
                if basis is not None:
                    crops = crops @ basis
                names, starts = np.unique(np.array(got.content), return_index=True)  # rows come sorted by content
                parts.append(_unit(np.add.reduceat(crops, np.sort(starts), axis=0)))
                for i, content in enumerate(names):
                    for rel in by_key[(fingerprint, str(content))]:
                        rows[rel] = total + i
                total += len(names)
        unit = np.concatenate(parts) if parts else np.zeros((0, 0), np.float32)
        return cls(rows, np.ascontiguousarray(unit, dtype=np.float32), width, basis)

    def vector(self, rels: Iterable[str]) -> np.ndarray | None:
        """The unit mean of these pictures' vectors (a sequence's), None where none has features."""
        picked = [self.rows[r] for r in rels if r in self.rows]
        if not picked:
            return None
        mean = self.unit[picked].sum(axis=0)
        norm = float(np.linalg.norm(mean))
        return mean / norm if norm > 0 else None

    def similar(self, rel: str, n: int, among: Sequence[str] | None = None) -> list[tuple[str, float]]:
        """The `n` pictures (of `among`, else every one with features) most like `rel` by cosine, most alike
        first, `rel` itself and its byte-identical copies aside; [] when `rel` has no features."""
        if rel not in self.rows:
            return []
        if among is None:  # every picture: the names and rows listed once per index, one product per query
            if self._listed is None:
                self._listed = (list(self.rows), np.fromiter(self.rows.values(), np.int64, len(self.rows)))
            names, index = self._listed
        else:
            names = [r for r in among if r in self.rows]
            index = np.fromiter((self.rows[r] for r in names), np.int64, len(names))
        if not names:
            return []
        own = self.rows[rel]
        scores = self.unit[index] @ self.unit[own] if among is not None or len(index) != len(self.unit) else \
            (self.unit @ self.unit[own])[index]  # [len(names)]: one product, no [n, n] matrix
        scores[index == own] = -np.inf
        n = max(0, min(n, len(names)))
        top = np.argpartition(-scores, n - 1)[:n] if 0 < n < len(names) else np.arange(len(names))
        top = top[np.argsort(-scores[top], kind="stable")]
        return [(names[i], float(scores[i])) for i in top[:n] if np.isfinite(scores[i])]


def max_cosine(queries: np.ndarray, keys: np.ndarray) -> np.ndarray:
    """For each row of `queries`, its largest cosine to a row of `keys` (-1 where `keys` is empty), in blocks
    of BLOCK x BLOCK so memory stays bounded."""
    best = np.full(len(queries), -1.0, np.float32)
    for q in range(0, len(queries), BLOCK):
        for k in range(0, len(keys), BLOCK):
            part = queries[q:q + BLOCK] @ keys[k:k + BLOCK].T
            np.maximum(best[q:q + BLOCK], part.max(axis=1), out=best[q:q + BLOCK])
    return best


@dataclass
class LearnOrder:
    """How much a label of each sequence would teach: least confident first (DeepFaune's margin between its two
    best classes, in bins of BIN), and among those, least like anything people labelled (the largest cosine of
    the sequence's vector to a labelled picture's, lower first). Sequences without features come last.

    `nearest` is kept as labels come: a new label costs one product of the sequences by the new pictures; a
    label taken back (undo, forget) computes it again from the labelled pictures."""

    index: FeatureIndex
    vectors: np.ndarray  # float32 [sequences, k]; a zero row where the sequence has no features
    has: np.ndarray  # bool [sequences]
    margin: np.ndarray  # float32 [sequences]
    nearest: np.ndarray = field(init=False)  # float32 [sequences]: max cosine to a labelled picture
    taught: set = field(default_factory=set)  # relpaths whose vectors `nearest` has seen

    def __post_init__(self) -> None:
        self.nearest = np.full(len(self.vectors), -1.0, np.float32)

    @classmethod
    def of(cls, index: FeatureIndex, sequences: Sequence[Sequence[str]], margins: Sequence[float]) -> "LearnOrder":
        k = index.unit.shape[1] if index.unit.size else 0
        vectors = np.zeros((len(sequences), k), np.float32)
        has = np.zeros(len(sequences), bool)
        for i, rels in enumerate(sequences):
            v = index.vector(rels)
            if v is not None:
                vectors[i], has[i] = v, True
        return cls(index, vectors, has, np.asarray(margins, np.float32))

    def learn(self, labelled: set[str]) -> None:
        """Bring `nearest` up to the pictures now labelled (with features)."""
        labelled = {r for r in labelled if r in self.index.rows}
        if self.taught - labelled:  # a label taken back: the maxima cannot be lowered piecewise
            self.nearest[:] = -1.0
            self.taught = set()
        new = sorted(labelled - self.taught)
        if new and self.vectors.shape[1]:
            keys = self.index.unit[[self.index.rows[r] for r in new]]
            np.maximum(self.nearest, max_cosine(self.vectors, keys), out=self.nearest)
        self.taught |= set(new)

    def order(self, queue: Sequence[int], reviewed: Sequence[bool]) -> list[int]:
        """`queue` (indexes of sequences) most teaching first, then those without features, and last those every
        file of which a person labelled (`reviewed`, aligned with `queue`: they taught already); ties keep the
        queue's order."""
        def key(pos_i: tuple[int, int]) -> tuple:
            pos, i = pos_i
            return (bool(reviewed[pos]), not self.has[i], int(self.margin[i] // BIN) if self.has[i] else 0,
                    float(self.nearest[i]) if self.has[i] else 0.0, pos)
        return [i for _, i in sorted(enumerate(queue), key=key)]


def margin_of(logits: Sequence[np.ndarray], temperature_single: float = 1.0, temperature_multi: float = 1.0
              ) -> float | None:
    """DeepFaune's margin for a sequence: the gap between its two best class probabilities, pooled as DeepFaune
    pools a sequence (the mean of its crops' logits over the temperature, then softmax); None where no crop was
    classified."""
    rows = [np.asarray(r, np.float64) for r in logits if r is not None and np.asarray(r).size >= 2]
    if not rows or len({r.size for r in rows}) > 1:
        return None
    z = np.mean(rows, axis=0) / (temperature_single if len(rows) == 1 else temperature_multi)
    p = np.exp(z - z.max())
    p /= p.sum()
    top = np.partition(p, -2)[-2:]
    return float(top[1] - top[0])
