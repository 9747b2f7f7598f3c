"""Geometry of the exposed weights: how much class structure phi shows to a naive reader.

Every function takes ``x`` of shape (n_samples, n_features) (the flattened read-layer
phi, DESIGN.md section 4) and integer labels ``y`` of shape (n_samples,). All distances
are cosine, because phi's scale is set by the inner-loop learning rates and is not what
the question is about; only the direction of the offset from the shared anchor is.
"""

from __future__ import annotations

import warnings

import numpy as np
import xarray as xr
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import silhouette_score
from sklearn.neighbors import NearestNeighbors
from sklearn.preprocessing import StandardScaler

from .config import StudyConfig
from .io import fitted_split
from .study import GEOMETRY_METRICS

GEOMETRY_KEYS = GEOMETRY_METRICS  # the metrics geometry_metrics returns, in this order


def _check_xy(x: np.ndarray, y: np.ndarray, name: str = "x") -> tuple[np.ndarray, np.ndarray]:
    """Validate and convert a (features, labels) pair; raise ValueError naming the problem.

    Features stay float32 (float16 phi is widened to float32, never to float64: at paper
    scale a split in float64 would not fit a job's memory); sums accumulate in float64."""
    x = np.asarray(x)
    x = x.astype(np.float32) if x.dtype == np.float16 or x.dtype.kind != "f" else x
    y = np.asarray(y)
    if x.ndim != 2:
        raise ValueError(f"{name} has shape {x.shape}: expected (n_samples, n_features)")
    if y.ndim != 1 or y.shape[0] != x.shape[0]:
        raise ValueError(
            f"labels for {name} have shape {y.shape}: expected ({x.shape[0]},) to match {name}"
        )
    if not np.issubdtype(y.dtype, np.integer):
        raise ValueError(f"labels for {name} have dtype {y.dtype}: expected integers")
    if x.shape[0] == 0 or x.shape[1] == 0:
        raise ValueError(f"{name} has shape {x.shape}: expected at least one sample and feature")
    if not np.all(np.isfinite(x)):
        raise ValueError(f"{name} contains NaN or inf: expected finite values")
    return x, y


def _check_k(k: int, n: int) -> None:
    # Leave-one-out leaves n - 1 candidates, so k must be below n.
    if not isinstance(k, (int, np.integer)) or k < 1 or k >= n:
        raise ValueError(f"k={k} with n={n} samples: expected an integer 1 <= k < n")


def _loo_neighbours(x: np.ndarray, k: int) -> np.ndarray:
    """Indices (n, k) of each sample's k nearest others by cosine distance, nearest first."""
    nn = NearestNeighbors(n_neighbors=k, metric="cosine", algorithm="brute").fit(x)
    # kneighbors() without a query excludes each point itself (by index, so exact
    # duplicates of a sample still count as its neighbours).
    return nn.kneighbors(return_distance=False)


def knn_consistency(x: np.ndarray, y: np.ndarray, k: int = 10) -> float:
    """Mean fraction of each sample's k nearest neighbours (cosine, leave-one-out) sharing its label."""
    x, y = _check_xy(x, y)
    _check_k(k, x.shape[0])
    neigh = _loo_neighbours(x, k)
    return float(np.mean(y[neigh] == y[:, None]))


def knn_accuracy(x: np.ndarray, y: np.ndarray, k: int = 10) -> float:
    """Leave-one-out accuracy of a k-nearest-neighbour majority vote (cosine distance).

    Ties between classes with equal vote counts go to the tied class of the nearest
    neighbour among those tied classes (so k=1 is plain nearest neighbour, and the vote
    never depends on label order).
    """
    x, y = _check_xy(x, y)
    _check_k(k, x.shape[0])
    classes, y_idx = np.unique(y, return_inverse=True)
    neigh_lab = y_idx[_loo_neighbours(x, k)]  # (n, k), nearest first
    n = x.shape[0]
    votes = np.zeros((n, classes.size), dtype=np.int64)
    np.add.at(votes, (np.repeat(np.arange(n), k), neigh_lab.ravel()), 1)
    tied = votes == votes.max(axis=1, keepdims=True)  # (n, n_classes)
    in_tie = tied[np.arange(n)[:, None], neigh_lab]  # (n, k): neighbour's class is tied
    first = np.argmax(in_tie, axis=1)  # nearest neighbour of a tied class
    pred = neigh_lab[np.arange(n), first]
    return float(np.mean(pred == y_idx))


def _unit_rows(x: np.ndarray) -> np.ndarray:
    norm = np.linalg.norm(x, axis=1, keepdims=True)
    # A zero vector has no direction; leave it at zero (cosine similarity 0 to all).
    return x / np.where(norm > 0, norm, 1.0)


def ncm_accuracy(
    x_train: np.ndarray, y_train: np.ndarray, x_test: np.ndarray, y_test: np.ndarray
) -> float:
    """Nearest-class-mean accuracy: class means of the train split, cosine similarity on test."""
    x_train, y_train = _check_xy(x_train, y_train, "x_train")
    x_test, y_test = _check_xy(x_test, y_test, "x_test")
    if x_train.shape[1] != x_test.shape[1]:
        raise ValueError(
            f"x_test has {x_test.shape[1]} features: expected {x_train.shape[1]} as in x_train"
        )
    classes, y_idx = np.unique(y_train, return_inverse=True)
    means = np.zeros((classes.size, x_train.shape[1]))
    np.add.at(means, y_idx, x_train)
    means /= np.bincount(y_idx)[:, None]
    sim = _unit_rows(x_test) @ _unit_rows(means).astype(x_test.dtype).T  # no float64 copy
    return float(np.mean(classes[np.argmax(sim, axis=1)] == y_test))


def linear_probe_accuracy(*args, **kwargs) -> float:
    """Test accuracy of the linear probe (the arguments of :func:`linear_probe`)."""
    return linear_probe(*args, **kwargs)[0]


def linear_probe(
    x_train: np.ndarray,
    y_train: np.ndarray,
    x_test: np.ndarray,
    y_test: np.ndarray,
    seed: int = 0,
    max_iter: int = 200,
    C: float = 1.0,
) -> tuple[float, int, bool]:
    """Test accuracy, lbfgs iterations and convergence of a multinomial logistic regression
    on standardised train-split phi.

    lbfgs is deterministic (``seed`` only fixes sklearn's random_state for completeness)
    and each iteration costs a few (n x d) @ (d x classes) products: ~1,300 x 2,000 inputs
    take ~12 ms per iteration on one core, so even the 200-iteration cap stays under 3 s.
    L2 with C=1 on standardised features keeps the problem strictly convex when the
    classes are linearly separable (d > n), so the optimum and the accuracy are defined.
    """
    x_train, y_train = _check_xy(x_train, y_train, "x_train")
    x_test, y_test = _check_xy(x_test, y_test, "x_test")
    if x_train.shape[1] != x_test.shape[1]:
        raise ValueError(
            f"x_test has {x_test.shape[1]} features: expected {x_train.shape[1]} as in x_train"
        )
    if np.unique(y_train).size < 2:
        raise ValueError(
            f"y_train has {np.unique(y_train).size} class: expected at least 2 for a probe"
        )
    if max_iter < 1:
        raise ValueError(f"max_iter={max_iter}: expected a positive integer")
    scaler = StandardScaler().fit(x_train)
    clf = LogisticRegression(C=C, solver="lbfgs", max_iter=max_iter, random_state=seed)
    with warnings.catch_warnings():
        # The iteration cap is deliberate (a probe, not a tuned classifier); whether it was
        # reached is recorded instead of warned about, and FINDINGS.md flags it.
        warnings.simplefilter("ignore", ConvergenceWarning)
        clf.fit(scaler.transform(x_train), y_train)
    iterations = int(np.max(clf.n_iter_))
    accuracy = float(np.mean(clf.predict(scaler.transform(x_test)) == y_test))
    return accuracy, iterations, iterations < max_iter


def silhouette(x: np.ndarray, y: np.ndarray) -> float:
    """Mean silhouette coefficient with cosine distance (sklearn)."""
    x, y = _check_xy(x, y)
    n_labels = np.unique(y).size
    if not 2 <= n_labels <= x.shape[0] - 1:
        raise ValueError(
            f"{n_labels} classes in {x.shape[0]} samples: silhouette needs 2 <= classes < samples"
        )
    return float(silhouette_score(x, y, metric="cosine"))


def fisher_ratio(x: np.ndarray, y: np.ndarray) -> float:
    """trace(S_between) / trace(S_within), from sums of squares (no d x d matrices).

    trace(S_b) = sum_c n_c ||mu_c - mu||^2 and trace(S_w) = sum_i ||x_i - mu_c(i)||^2.
    Returns inf when the classes are separated points (S_w = 0, S_b > 0) and NaN when
    every sample is identical.
    """
    x, y = _check_xy(x, y)
    _, y_idx, counts = np.unique(y, return_inverse=True, return_counts=True)
    sums = np.zeros((counts.size, x.shape[1]))
    np.add.at(sums, y_idx, x)
    mu_c = sums / counts[:, None]
    mu = x.mean(axis=0)
    between = float(np.sum(counts * np.sum((mu_c - mu) ** 2, axis=1)))
    # in row blocks: x - mu_c[y] at once would be a float64 copy of the whole split
    within = sum(
        float(np.sum((x[i : i + 1024] - mu_c[y_idx[i : i + 1024]]) ** 2))
        for i in range(0, len(x), 1024)
    )
    if within == 0.0:
        return float("nan") if between == 0.0 else float("inf")
    return between / within


def geometry_metrics(
    x_train: np.ndarray,
    y_train: np.ndarray,
    x_test: np.ndarray,
    y_test: np.ndarray,
    k: int = 10,
    seed: int = 0,
) -> dict[str, float]:
    """All geometry metrics of DESIGN.md section 4; everything but the probes on the test split."""
    x_test, y_test = _check_xy(x_test, y_test, "x_test")
    _check_k(k, x_test.shape[0])
    probe, iterations, converged = linear_probe(x_train, y_train, x_test, y_test, seed=seed)
    return {
        "knn_consistency": knn_consistency(x_test, y_test, k),
        "knn_accuracy": knn_accuracy(x_test, y_test, k),
        "ncm_accuracy": ncm_accuracy(x_train, y_train, x_test, y_test),
        "linear_probe_accuracy": probe,
        "silhouette": silhouette(x_test, y_test),
        "fisher_ratio": fisher_ratio(x_test, y_test),
        # diagnostics of the probe itself (study.GEOMETRY_DIAGNOSTICS), not geometry
        "linear_probe_iterations": float(iterations),
        "linear_probe_converged": float(converged),
    }


def run_geometry(model: None, fitted: xr.Dataset, cfg: StudyConfig, device: None) -> xr.Dataset:
    """geometry.nc of one run: the probes on the exposed phi (no model, no torch)."""
    seed, sample = int(fitted.attrs["seed"]), cfg.probes.sample
    xtr, ytr = fitted_split(fitted, "train", sample["train"], seed, np.float32)
    xte, yte = fitted_split(fitted, "test", sample["test"], seed, np.float32)
    metrics = geometry_metrics(
        xtr.reshape(len(xtr), -1),
        ytr,
        xte.reshape(len(xte), -1),
        yte,
        k=cfg.probes.knn_k,
        seed=seed,
    )
    return xr.Dataset({k: ((), v, {"units": "1"}) for k, v in metrics.items()})
