"""The clustering helpers (``jax_lazy.cluster``) against NumPy references written with loops."""

from __future__ import annotations

import jax
import numpy as np
import pytest

from jax_lazy import ShapeError, cluster

rng = np.random.default_rng(7)


def _ref_grid_labels(x, size):
    """Cells counted from x.min, numbered in lexicographic order of their coordinates."""
    cells = [tuple(int(c) for c in np.floor((p - x.min(0)) / size)) for p in x]
    order = {c: k for k, c in enumerate(sorted(set(cells)))}
    return np.array([order[c] for c in cells])


@pytest.mark.parametrize("D,size", [(1, 0.3), (2, 0.5), (3, np.array([0.4, 0.7, 1.0])), (5, 1.5)])
def test_grid_cluster(D, size):
    x = rng.normal(size=(200, D))
    lab = np.asarray(cluster.grid_cluster(x, size))
    np.testing.assert_array_equal(lab, _ref_grid_labels(x, size))
    assert lab.dtype == np.int32


def test_sort_ranges_centroids():
    x = rng.normal(size=(60, 2))
    w = rng.uniform(0.5, 2.0, 60)
    lab = rng.integers(0, 7, 60)
    lab[lab == 3] = 4  # cluster 3 empty
    (xs, ws), ls = cluster.sort_clusters((x, w), lab)
    assert isinstance(xs, jax.Array) and np.all(np.diff(np.asarray(ls)) >= 0)
    ranges = np.asarray(cluster.cluster_ranges(lab))
    for c in range(7):
        start, end = ranges[c]
        np.testing.assert_array_equal(np.asarray(ls)[start:end], c)
        np.testing.assert_allclose(np.asarray(xs)[start:end], x[lab == c], rtol=1e-6)  # stable: original order
        assert end - start == np.sum(lab == c)
    r2, cent, wc = cluster.cluster_ranges_centroids(x, lab, weights=w)
    np.testing.assert_array_equal(np.asarray(r2), ranges)
    for c in range(7):
        m = lab == c
        np.testing.assert_allclose(float(wc[c]), w[m].sum(), rtol=1e-6)
        if m.any():
            np.testing.assert_allclose(np.asarray(cent[c]), (w[m, None] * x[m]).sum(0) / w[m].sum(), rtol=1e-5)
        else:
            np.testing.assert_array_equal(np.asarray(cent[c]), 0)  # min_weight, no NaN
    _, _, counts = cluster.cluster_ranges_centroids(x, lab)
    np.testing.assert_array_equal(np.asarray(counts), np.bincount(lab, minlength=7))


def test_jit_with_static_cluster_count():
    x, lab = rng.normal(size=(30, 3)), rng.integers(0, 4, 30)
    f = jax.jit(lambda x, lab: (cluster.cluster_ranges(lab, 4), cluster.cluster_centroids(x, lab, 4),
                                cluster.sort_clusters(x, lab)))
    ranges, cent, (xs, ls) = f(x, lab)
    np.testing.assert_array_equal(np.asarray(ranges), np.asarray(cluster.cluster_ranges(lab)))
    np.testing.assert_allclose(np.asarray(cent), np.asarray(cluster.cluster_centroids(x, lab)), rtol=1e-6)


def test_from_matrix_and_swap_axes():
    ranges_i = np.array([[0, 3], [3, 4], [4, 9]])
    ranges_j = np.array([[0, 2], [2, 5]])
    keep = np.array([[True, False], [False, False], [True, True]])
    ri, si, rj, rj2, sj, ri2 = map(np.asarray, cluster.from_matrix(ranges_i, ranges_j, keep))
    np.testing.assert_array_equal(ri, ranges_i)
    np.testing.assert_array_equal(rj2, ranges_j)
    for k in range(3):  # the j ranges of i cluster k: those of keep's row k
        got = rj[(si[k - 1] if k else 0):si[k]]
        np.testing.assert_array_equal(got.reshape(-1, 2), ranges_j[keep[k]])
    for l in range(2):
        got = ri2[(sj[l - 1] if l else 0):sj[l]]
        np.testing.assert_array_equal(got.reshape(-1, 2), ranges_i[keep[:, l]])
    swapped = cluster.swap_axes((ri, si, rj, rj2, sj, ri2))
    assert all(a is b for a, b in zip(swapped, (rj2, sj, ri2, ri, si, rj)))
    assert cluster.swap_axes(None) is None


def test_errors():
    with pytest.raises(ShapeError, match="keep must be"):
        cluster.from_matrix(np.zeros((2, 2)), np.zeros((3, 2)), np.ones((2, 2), bool))
    with pytest.raises(ShapeError, match="x must be"):
        cluster.grid_cluster(np.zeros(5), 0.1)
    with pytest.raises(ShapeError, match="size must be"):
        cluster.grid_cluster(np.zeros((5, 2)), np.ones(3))
