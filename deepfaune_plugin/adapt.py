"""Fitting a site head on people's labels (issue 34), and the proof that it helps before it is offered.

The method: multinomial logistic regression on the classifier's stored features, started at DeepFaune's own head
(W0, b0, read from its ONNX graph) and pulled toward it by an L2 penalty, ||W - W0||^2 (scaled by the features'
total variance, so the strength means the same for any backbone) and ||b - b*||^2, where b* is b0 shifted by the
site's class priors from the labels (log of the Laplace-smoothed label share against a uniform share: zero without
labels).  So with no labels the head is DeepFaune's, exactly; with a few it moves little; with many it follows
them.  New classes (labels DeepFaune lacks) start at zero weights.  The objective is convex and smooth; L-BFGS in
NumPy solves it in well under a second per thousand crops (benchmarks/RESULTS.md) without SciPy or scikit-learn,
whose LogisticRegression cannot pull toward W0 (a warm start is not a prior: its penalty still pulls to zero).

The proof: k-fold cross-validation by whole sequences (a sequence's images never sit on both sides), the adapted
head of each fold deciding its held-out sequences through DeepFaune's own decision rules (temperature, threshold,
sequence pooling: decisions.decide_run), against DeepFaune's head on the same files.  Intervals: 95 % bootstrap
over sequences (they are the independent units) for the accuracies and their paired difference; Wilson for the
per-class recalls.  The adapted head "helps" only when the difference's interval lies above zero.
"""
from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any, Callable, Mapping, Sequence

import numpy as np

DEFAULT_STRENGTH = 0.1
FOLDS = 5
BOOTSTRAP = 1000
MAX_ITER = 300
#: The stop: the gradient's largest component (the objective is a mean over the crops).  1e-5 instead of 1e-6 cut
#: a fit of 10,000 crops from 41 evaluations to 27; with the folds started from the full fit, an adapt's 6 fits
#: from 234 evaluations to 118, every crop's probabilities within 2e-3 of the tighter fits' and its best class the
#: same (benchmarks/RESULTS.md, issue 34.2).
GRAD_TOL = 1e-5


def extend(weight0: np.ndarray, bias0: np.ndarray, new: int) -> tuple[np.ndarray, np.ndarray]:
    """DeepFaune's head with `new` classes added: zero weights, the mean of its biases."""
    if not new:
        return weight0.astype(np.float32), bias0.astype(np.float32)
    w = np.vstack([weight0, np.zeros((new, weight0.shape[1]), weight0.dtype)])
    b = np.concatenate([bias0, np.full(new, float(np.mean(bias0)), bias0.dtype)])
    return w.astype(np.float32), b.astype(np.float32)


def prior_shift(y: np.ndarray, k: int) -> np.ndarray:
    """log((n_c + 1) / (n + k)) + log k per class: the labels' class priors against a uniform share (0 with none)."""
    counts = np.bincount(y, minlength=k).astype(np.float64)
    return np.log((counts + 1.0) / (counts.sum() + k)) + np.log(k)


def fit_head(x: np.ndarray, y: np.ndarray, weight0: np.ndarray, bias0: np.ndarray,
             strength: float = DEFAULT_STRENGTH, max_iter: int = MAX_ITER,
             start: tuple[np.ndarray, np.ndarray] | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(W, b) minimising [sum of cross-entropies + strength/2 (v ||W - W0||^2 + ||b - b*||^2)] / n, from W0, b*,
    v the features' total variance (so a strength means the same logit change whatever the backbone's scale).

    x: features [n, D]; y: class indices [n] into the rows of weight0 (new classes already added: `extend`).
    `start`: a head (W, b) to start from instead of (W0, b*): the fit on all the labels, for a fold's fit on most
    of them.  The objective is strictly convex, so the minimum is the same; from near it, half the steps."""
    k = weight0.shape[0]
    if len(y) == 0:
        return weight0.astype(np.float32).copy(), bias0.astype(np.float32).copy()
    x = np.asarray(x, dtype=np.float32)
    xt = np.ascontiguousarray(x.T)  # the gradient's product, several times faster than through g.T
    n, d = x.shape
    target_b = bias0.astype(np.float64) + prior_shift(y, k)
    centred = x - x.mean(axis=0)
    m2 = float(np.mean(np.einsum("ij,ij->i", centred, centred))) or 1.0  # the features' total variance
    base = x @ weight0.T.astype(np.float32) + target_b.astype(np.float32)  # the logits at the start
    rows = np.arange(n)
    lam_w, lam_b = strength * m2, strength

    def objective(z: np.ndarray) -> tuple[float, np.ndarray]:
        # float32 for the [n, K] arrays (as the products already were), float64 for the sums and the step
        dw, db = z[:k * d].reshape(k, d), z[k * d:]
        logits = x @ dw.T.astype(np.float32)
        logits += base
        logits += db.astype(np.float32)
        logits -= logits.max(axis=1, keepdims=True)
        p = np.exp(logits)
        total = p.sum(axis=1)
        loss = float(np.log(total).sum(dtype=np.float64) - logits[rows, y].sum(dtype=np.float64))
        p /= total[:, None]
        p[rows, y] -= 1.0  # the gradient of the cross-entropies with respect to the logits
        grad_w = (xt @ p).T.astype(np.float64) + lam_w * dw
        grad_b = p.sum(axis=0, dtype=np.float64) + lam_b * db
        loss += 0.5 * (lam_w * float(np.sum(dw * dw)) + lam_b * float(np.sum(db * db)))
        return loss / n, np.concatenate([grad_w.ravel(), grad_b]) / n

    z0 = np.zeros(k * d + k)
    if start is not None:
        z0[:k * d] = (start[0].astype(np.float64) - weight0).ravel()
        z0[k * d:] = start[1].astype(np.float64) - target_b
    z = lbfgs(objective, z0, max_iter=max_iter)
    w = weight0.astype(np.float64) + z[:k * d].reshape(k, d)
    return w.astype(np.float32), (target_b + z[k * d:]).astype(np.float32)


def lbfgs(f: Callable[[np.ndarray], tuple[float, np.ndarray]], z: np.ndarray, max_iter: int = MAX_ITER,
          memory: int = 10, tol: float = GRAD_TOL) -> np.ndarray:
    """Minimise a smooth convex f (value, gradient) from z: limited-memory BFGS with a backtracking (Armijo) line
    search.  Stops when the gradient's largest component is under `tol` or the value stops falling."""
    value, grad = f(z)
    steps: list[tuple[np.ndarray, np.ndarray, float]] = []
    for it in range(max_iter):
        if np.max(np.abs(grad)) < tol:
            break
        q = grad.copy()
        alphas = []
        for s, yv, rho in reversed(steps):
            a = rho * float(s @ q)
            alphas.append(a)
            q -= a * yv
        if steps:
            s, yv, _ = steps[-1]
            q *= float(s @ yv) / float(yv @ yv)
        else:
            q /= max(1.0, float(np.linalg.norm(grad)))
        for (s, yv, rho), a in zip(steps, reversed(alphas)):
            q += s * (a - rho * float(yv @ q))
        direction = -q
        slope = float(grad @ direction)
        if slope >= 0:  # not a descent direction (rounding): start the memory again
            steps, direction, slope = [], -grad, -float(grad @ grad)
        t = 1.0
        for _ in range(30):
            new_z = z + t * direction
            new_value, new_grad = f(new_z)
            if new_value <= value + 1e-4 * t * slope:
                break
            t *= 0.5
        else:
            break
        s, yv = new_z - z, new_grad - grad
        sy = float(s @ yv)
        if sy > 1e-12:
            steps.append((s, yv, 1.0 / sy))
            steps = steps[-memory:]
        done = abs(value - new_value) <= 1e-10 * max(1.0, abs(value))
        z, value, grad = new_z, new_value, new_grad
        if done:
            break
    return z


# -- the proof: cross-validation by sequences ----------------------------------------------------------------

@dataclass(frozen=True)
class Interval:
    value: float
    low: float
    high: float

    def text(self) -> str:
        return f"{self.value:6.1%} [{self.low:.1%}, {self.high:.1%}]"

    def as_dict(self) -> dict[str, float]:
        return {"value": round(self.value, 4), "low": round(self.low, 4), "high": round(self.high, 4)}


@dataclass
class Verdict:
    """The cross-validated comparison of DeepFaune's head and the adapted one on the same labelled files."""

    folds: int
    files: int  # labelled files compared
    sequences: int
    deepfaune: Interval  # accuracy (per file, the sequence's decision; undefined counts as wrong)
    adapted: Interval
    difference: Interval  # adapted - DeepFaune, paired
    recall: dict[str, tuple[int, Interval, Interval]] = field(default_factory=dict)  # class -> (support, DF, adapted)

    @property
    def helps(self) -> bool:
        return self.difference.low > 0

    def as_dict(self) -> dict[str, Any]:
        return {"folds": self.folds, "files": self.files, "sequences": self.sequences, "helps": self.helps,
                "deepfaune": self.deepfaune.as_dict(), "adapted": self.adapted.as_dict(),
                "difference": self.difference.as_dict(),
                "recall": {c: {"support": n, "deepfaune": a.as_dict(), "adapted": b.as_dict()}
                           for c, (n, a, b) in self.recall.items()}}

    def lines(self) -> list[str]:
        out = [f"{self.folds}-fold cross-validation by sequence: {self.files} labelled files in {self.sequences} "
               "sequences, each decided by a head that never saw its sequence (95 % intervals)",
               f"  accuracy   DeepFaune {self.deepfaune.text()}   adapted {self.adapted.text()}   "
               f"difference {self.difference.value:+.1%} [{self.difference.low:+.1%}, {self.difference.high:+.1%}]",
               "  recall per class (files):"]
        for label, (n, a, b) in self.recall.items():
            out.append(f"    {label:<24} {n:>6}   DeepFaune {a.text()}   adapted {b.text()}")
        if self.helps:
            out.append("verdict: the adapted head is better on these labels")
        else:
            out.append("verdict: the adapted head does NOT help on these labels (the difference's interval reaches "
                       "zero or below): it is kept, but not offered as this source's default")
        return out


def wilson(k: int, n: int, z: float = 1.96) -> Interval:
    if n == 0:
        return Interval(0.0, 0.0, 0.0)
    p = k / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * np.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return Interval(p, max(0.0, centre - half), min(1.0, centre + half))


def bootstrap(groups: np.ndarray, base_ok: np.ndarray, new_ok: np.ndarray, rounds: int = BOOTSTRAP,
              seed: int = 0) -> tuple[Interval, Interval, Interval]:
    """Accuracies and their paired difference, 95 % percentile intervals over sequences drawn with replacement."""
    ids, inverse = np.unique(groups, return_inverse=True)
    n = np.bincount(inverse, minlength=len(ids)).astype(np.float64)
    a = np.bincount(inverse, weights=base_ok, minlength=len(ids))
    b = np.bincount(inverse, weights=new_ok, minlength=len(ids))
    rng = np.random.default_rng(seed)
    draws = rng.multinomial(len(ids), np.full(len(ids), 1.0 / len(ids)), size=rounds).astype(np.float64)
    files = draws @ n
    acc_a, acc_b = (draws @ a) / files, (draws @ b) / files

    def interval(point: float, samples: np.ndarray) -> Interval:
        low, high = np.percentile(samples, [2.5, 97.5])
        return Interval(point, float(low), float(high))

    pa, pb = a.sum() / n.sum(), b.sum() / n.sum()
    return interval(pa, acc_a), interval(pb, acc_b), interval(pb - pa, acc_b - acc_a)


def fold_of(sequences: Sequence[int], folds: int, seed: int = 0) -> dict[int, int]:
    """Sequence -> fold, the sequences shuffled then dealt out in turn."""
    order = sorted(set(sequences))
    np.random.default_rng(seed).shuffle(order)
    return {s: i % folds for i, s in enumerate(order)}


def correct(predicted: str, truth: str, bird: str = "bird") -> bool:
    """A file's decision is the person's label (a bird group counts as "bird" for a person who said bird)."""
    return predicted == truth or (truth == bird and predicted.startswith(bird + " "))


def compare(truth: Mapping[str, str], sequence_of: Mapping[str, int], base: Mapping[str, str],
            adapted: Mapping[str, str], folds: int) -> Verdict:
    """The verdict from each labelled file's sequence decision by DeepFaune's head and by the adapted heads."""
    rels = [rel for rel in truth if rel in base and rel in adapted]
    groups = np.array([sequence_of[rel] for rel in rels])
    base_ok = np.array([correct(base[rel], truth[rel]) for rel in rels], dtype=np.float64)
    new_ok = np.array([correct(adapted[rel], truth[rel]) for rel in rels], dtype=np.float64)
    if not rels:
        empty = Interval(0.0, 0.0, 0.0)
        return Verdict(folds, 0, 0, empty, empty, empty)
    da, ad, diff = bootstrap(groups, base_ok, new_ok)
    recall = {}
    for label in sorted({truth[rel] for rel in rels}):
        idx = [i for i, rel in enumerate(rels) if truth[rel] == label]
        recall[label] = (len(idx), wilson(int(base_ok[idx].sum()), len(idx)), wilson(int(new_ok[idx].sum()), len(idx)))
    return Verdict(folds, len(rels), len(set(groups.tolist())), da, ad, diff, recall)


def fit_per_fold(x: np.ndarray, y: np.ndarray, crop_fold: np.ndarray, weight0: np.ndarray, bias0: np.ndarray,
                 folds: int, strength: float,
                 start: tuple[np.ndarray, np.ndarray] | None = None) -> list[tuple[np.ndarray, np.ndarray]]:
    """One head per fold, each fitted on the crops of the other folds (from `start`, the head fitted on all of
    them, when given: `fit_head`)."""
    return [fit_head(x[crop_fold != f], y[crop_fold != f], weight0, bias0, strength, start=start)
            for f in range(folds)]


def relabel(raw, logits_of: Callable[[Any], np.ndarray | None]):
    """`raw` (a RawResult) with each classified crop's logits replaced by `logits_of(crop result)` where it gives
    some; a video's frames each, its own key-frame result too.  The original is left as it was."""
    frames = [relabel(f, logits_of) for f in raw.frames]
    new = logits_of(raw) if raw.logits is not None else None
    return replace(raw, logits=raw.logits if new is None else new, frames=frames)
