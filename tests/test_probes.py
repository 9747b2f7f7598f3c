"""Geometry metrics of weight vectors: hand-computed cases, limits and real small data."""

from __future__ import annotations

import time

import numpy as np
import pytest
from sklearn.datasets import load_digits
from threadpoolctl import threadpool_limits

from inrroute import probes
from inrroute.study import GEOMETRY_DIAGNOSTICS


def _angles(deg: list[float], radius: list[float]) -> np.ndarray:
    a = np.deg2rad(np.asarray(deg, dtype=float))
    return np.asarray(radius)[:, None] * np.stack([np.cos(a), np.sin(a)], axis=1)


# Six points in 2-D; cosine distance depends only on the angle, so the radii (all
# different) must not matter. Class 0 at 0, 10, 40 degrees; class 1 at 30, 90, 100.
# Angular distances to the others, nearest first:
#   0:  10(c0) 30(c1) 40(c0)     10: 0(c0) 30(c1) 40(c0)     40: 30(c1) 10(c0) 0(c0)
#   30: 40(c0) 10(c0) 0(c0)      90: 100(c1) 40(c0) 30(c1)   100: 90(c1) 40(c0) 30(c1)
TINY_X = _angles([0, 10, 40, 30, 90, 100], [1.0, 3.0, 0.5, 2.0, 7.0, 0.2])
TINY_Y = np.array([0, 0, 0, 1, 1, 1])


def test_knn_consistency_by_hand():
    # k=2: fractions 1/2, 1/2, 1/2, 0, 1/2, 1/2 -> 2.5 / 6
    assert probes.knn_consistency(TINY_X, TINY_Y, k=2) == pytest.approx(5 / 12)
    # k=3: 2/3 everywhere except the 30-degree point (0) -> (5 * 2/3) / 6
    assert probes.knn_consistency(TINY_X, TINY_Y, k=3) == pytest.approx(5 / 9)


def test_knn_accuracy_by_hand_and_tie_break():
    # k=2 gives a 1-1 tie at every point but 30 degrees; the nearest neighbour's class
    # wins: 0->0 ok, 10->0 ok, 40->1 wrong, 30->0 wrong, 90->1 ok, 100->1 ok.
    # (Breaking ties by the lowest label would give 3/6.)
    assert probes.knn_accuracy(TINY_X, TINY_Y, k=2) == pytest.approx(4 / 6)
    assert probes.knn_accuracy(TINY_X, TINY_Y, k=1) == pytest.approx(4 / 6)
    # k=3: only the 30-degree point (all three neighbours class 0) is wrong.
    assert probes.knn_accuracy(TINY_X, TINY_Y, k=3) == pytest.approx(5 / 6)
    # Label values are arbitrary integers, not indices.
    assert probes.knn_accuracy(TINY_X, TINY_Y * 7 - 3, k=2) == pytest.approx(4 / 6)


def test_leave_one_out_excludes_the_sample_not_its_duplicate():
    x = np.array([[1.0, 0.0], [1.0, 0.0], [0.0, 1.0], [0.0, 1.0]])
    y = np.array([0, 1, 0, 1])
    # Each point's only distance-0 neighbour is its duplicate, of the other class.
    assert probes.knn_consistency(x, y, k=1) == 0.0
    assert probes.knn_accuracy(x, y, k=1) == 0.0


def test_ncm_accuracy_by_hand_uses_cosine():
    x_train = np.array([[1.0, 0.0], [3.0, 0.0], [0.0, 1.0], [0.0, 5.0]])  # means (2,0), (0,3)
    y_train = np.array([0, 0, 1, 1])
    # (0.2, 0.5) is Euclidean-closer to (2, 0) but points towards (0, 3): class 1.
    x_test = np.array([[10.0, 1.0], [1.0, 10.0], [1.0, 1.1], [0.2, 0.5]])
    y_test = np.array([0, 1, 0, 1])  # predictions 0, 1, 1, 1
    assert probes.ncm_accuracy(x_train, y_train, x_test, y_test) == pytest.approx(0.75)


def test_fisher_ratio_by_hand():
    x = np.array([[0, 0], [2, 0], [4, 1], [6, 1], [5, 4]], dtype=float)
    y = np.array([0, 0, 1, 1, 1])
    # mu0=(1,0), mu1=(5,2), mu=(3.4,1.2): tr S_b = 2*7.2 + 3*3.2 = 24; tr S_w = 2 + 8 = 10.
    assert probes.fisher_ratio(x, y) == pytest.approx(2.4)
    assert probes.fisher_ratio(x + 100.0, y) == pytest.approx(2.4)  # translation invariant
    assert probes.fisher_ratio(np.array([[0.0], [0.0], [1.0], [1.0]]), [0, 0, 1, 1]) == np.inf


def _clusters(n_per: int, n_classes: int, dim: int, spread: float, seed: int):
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(n_classes, dim)) * 10
    y = np.repeat(np.arange(n_classes), n_per)
    return centres[y] + spread * rng.normal(size=(y.size, dim)), y


def test_separated_clusters_are_perfect():
    x, y = _clusters(30, 4, 16, 0.01, seed=1)
    assert probes.knn_consistency(x, y) == 1.0
    assert probes.knn_accuracy(x, y) == 1.0
    assert probes.silhouette(x, y) > 0.95
    assert probes.fisher_ratio(x, y) > 1e4
    m = probes.geometry_metrics(x[::2], y[::2], x[1::2], y[1::2], k=5)
    assert m["ncm_accuracy"] == 1.0 and m["linear_probe_accuracy"] == 1.0


def test_random_labels_are_at_chance():
    rng = np.random.default_rng(2)
    x = rng.normal(size=(2000, 20))
    y = rng.integers(0, 4, size=2000)
    assert probes.knn_consistency(x, y) == pytest.approx(0.25, abs=0.03)
    assert probes.knn_accuracy(x, y) == pytest.approx(0.25, abs=0.05)
    assert abs(probes.silhouette(x, y)) < 0.05


def test_metrics_ignore_the_scale_of_each_sample():
    x, y = _clusters(20, 3, 8, 3.0, seed=3)
    scale = np.random.default_rng(4).uniform(0.1, 10, size=(x.shape[0], 1))
    assert probes.knn_consistency(x * scale, y) == probes.knn_consistency(x, y)
    assert probes.silhouette(x * scale, y) == pytest.approx(probes.silhouette(x, y))


@pytest.fixture(scope="module")
def digits():
    x, y = load_digits(return_X_y=True)
    return x[:1347], y[:1347], x[1347:], y[1347:]


def test_digits_pixels_well_above_chance(digits):
    x_train, y_train, x_test, y_test = digits
    m = probes.geometry_metrics(x_train, y_train, x_test, y_test, k=10, seed=0)
    assert list(m) == [*probes.GEOMETRY_KEYS, *GEOMETRY_DIAGNOSTICS]
    assert m["linear_probe_converged"] in (0.0, 1.0) and m["linear_probe_iterations"] >= 1
    assert m["knn_consistency"] > 0.8  # chance is 0.1
    assert m["knn_accuracy"] > 0.9
    assert m["ncm_accuracy"] > 0.8
    assert m["linear_probe_accuracy"] > 0.85
    assert m["silhouette"] > 0.1
    assert m["fisher_ratio"] > 0.3
    assert all(isinstance(v, float) for v in m.values())


def test_linear_probe_is_deterministic_and_fast(digits):
    x_train, y_train, x_test, y_test = digits
    rng = np.random.default_rng(5)
    # 2,000 features from the 64 pixels plus noise: the size of a small phi.
    proj = rng.normal(size=(64, 2000))
    wide_train = x_train @ proj + rng.normal(size=(x_train.shape[0], 2000))
    wide_test = x_test @ proj + rng.normal(size=(x_test.shape[0], 2000))
    # One BLAS thread: the bound is on the algorithm's cost, not on how busy a shared
    # machine's cores are (multi-threaded BLAS slows down badly when oversubscribed).
    with threadpool_limits(limits=1):
        start = time.process_time()
        a = probes.linear_probe_accuracy(wide_train, y_train, wide_test, y_test, seed=0)
        assert time.process_time() - start < 5.0
    b = probes.linear_probe_accuracy(wide_train, y_train, wide_test, y_test, seed=0)
    assert a == b
    assert a > 0.8


@pytest.mark.parametrize("k", [6, 7, 0])
def test_bad_k_names_k_and_n(k):
    with pytest.raises(ValueError, match=rf"k={k} with n=6"):
        probes.knn_consistency(TINY_X, TINY_Y, k=k)
    with pytest.raises(ValueError, match=rf"k={k} with n=6"):
        probes.geometry_metrics(TINY_X, TINY_Y, TINY_X, TINY_Y, k=k)


def test_bad_inputs_raise_value_error():
    with pytest.raises(ValueError, match="expected \\(n_samples, n_features\\)"):
        probes.knn_consistency(np.zeros(6), TINY_Y, k=2)
    with pytest.raises(ValueError, match="to match"):
        probes.knn_consistency(TINY_X, TINY_Y[:5], k=2)
    with pytest.raises(ValueError, match="integers"):
        probes.knn_consistency(TINY_X, TINY_Y.astype(float), k=2)
    with pytest.raises(ValueError, match="NaN or inf"):
        probes.fisher_ratio(np.full((4, 2), np.nan), [0, 0, 1, 1])
    with pytest.raises(ValueError, match="features"):
        probes.ncm_accuracy(TINY_X, TINY_Y, np.zeros((2, 3)), [0, 1])
    with pytest.raises(ValueError, match="at least 2"):
        probes.linear_probe_accuracy(TINY_X, np.zeros(6, int), TINY_X, TINY_Y)
    with pytest.raises(ValueError, match="silhouette needs"):
        probes.silhouette(TINY_X, np.zeros(6, int))
