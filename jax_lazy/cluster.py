"""Clustering helpers for block-sparse reductions, with pykeops' semantics (``pykeops.*.cluster``).

The usual pipeline: label the points by a grid (:func:`grid_cluster`), sort them by label
(:func:`sort_clusters`), get each cluster's index range and centroid
(:func:`cluster_ranges_centroids`), threshold the centroid distances into a boolean
cluster-by-cluster matrix ``keep`` and turn it into the ranges 6-tuple
(:func:`from_matrix`): ``(ranges_i, slices_i, redranges_j, ranges_j, slices_j, redranges_i)``.

Integer outputs have JAX's default integer dtype (int32; int64 with ``jax_enable_x64``),
as the index outputs of the reductions. Under ``jit``: :func:`sort_clusters`,
:func:`swap_axes`, and :func:`cluster_ranges` / :func:`cluster_centroids` given ``Nlab``
(a static cluster count) trace; :func:`grid_cluster`, :func:`from_matrix` and the others
without ``Nlab`` need concrete arrays, because their output sizes depend on the data
(the number of clusters, of kept blocks): they raise JAX's concretization error under a trace.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from .errors import ShapeError
from .reductions import index_dtype


def _index(x):
    return jnp.asarray(x, dtype=index_dtype())


def grid_cluster(x, size) -> jax.Array:
    """Labels of the points ``x`` by the cells of a regular grid of cell size ``size``.

    Args:
      x: ``(M, D)`` floating points, any D (pykeops: D <= 3).
      size: a number, or a ``(D,)`` array of cell sizes per coordinate.

    Returns:
      ``(M,)`` integer labels, compact in ``[0, C)``, C the number of non-empty cells,
      numbered in the lexicographic order of the cells (coordinate 0 first); cells are
      counted from ``x.min(0)``, as pykeops' torch version.

    Raises:
      ShapeError: ``x`` not 2-D, or ``size`` neither a number nor ``(D,)``.
    """
    x = np.asarray(x)
    if x.ndim != 2:
        raise ShapeError(f"grid_cluster: x must be (M, D), got shape {x.shape}")
    size = np.asarray(size, dtype=np.float64)
    if size.ndim > 1 or (size.ndim == 1 and size.shape != (x.shape[1],)):
        raise ShapeError(f"grid_cluster: size must be a number or ({x.shape[1]},), got shape {size.shape}")
    cells = np.floor((x - x.min(axis=0)) / size).astype(np.int64)
    _, labels = np.unique(cells, axis=0, return_inverse=True)
    return _index(labels.reshape(-1))


def sort_clusters(x, lab):
    """``x`` (an array, or a tuple/list of arrays, indexed along axis 0) and ``lab``
    sorted by label (a stable sort: points of one cluster keep their order).

    Returns ``(x sorted, lab sorted)``; ``x sorted`` has the type of ``x`` (array or tuple).
    """
    perm = jnp.argsort(jnp.asarray(lab), stable=True)

    def sort(a):
        return jnp.asarray(a)[perm]

    xs = type(x)(map(sort, x)) if isinstance(x, (tuple, list)) else sort(x)
    return xs, jnp.asarray(lab)[perm]


def _counts(lab, Nlab):
    lab = jnp.asarray(lab)
    n = int(lab.max()) + 1 if Nlab is None else int(Nlab)
    return jnp.bincount(lab, length=n)


def cluster_ranges(lab, Nlab=None) -> jax.Array:
    """``(C, 2)`` half-open ``[start, end)`` index ranges of the clusters ``0..C-1`` in the
    order :func:`sort_clusters` gives (``C = Nlab``, or ``lab.max() + 1``)."""
    counts = _counts(lab, Nlab)
    ends = jnp.cumsum(counts)
    return _index(jnp.stack([ends - counts, ends], axis=1))


def cluster_centroids(x, lab, Nlab=None, weights=None, weights_c=None) -> jax.Array:
    """``(C, D)`` centroids ``sum_{lab_k = c} w_k x_k / sum_{lab_k = c} w_k`` of the points
    ``x`` ``(M, D)`` (weights ``(M,)``, default 1; ``weights_c`` ``(C,)``: the cluster
    weights when already known). An empty cluster's centroid is NaN. Same dtype as x."""
    x, lab = jnp.asarray(x), jnp.asarray(lab)
    n = int(lab.max()) + 1 if Nlab is None else int(Nlab)
    w = jnp.ones(x.shape[0], x.dtype) if weights is None else jnp.asarray(weights, x.dtype)
    total = jax.ops.segment_sum(w[:, None] * x, lab, num_segments=n)
    wc = jax.ops.segment_sum(w, lab, num_segments=n) if weights_c is None else jnp.asarray(weights_c, x.dtype)
    return total / wc[:, None]


def cluster_ranges_centroids(x, lab, weights=None, min_weight=1e-9):
    """``(ranges (C, 2), centroids (C, D), cluster weights (C,))`` of the points ``x``
    ``(M, D)`` labelled by ``lab``; the weights default to 1 (then the cluster weights are
    the point counts, as floats). Clusters lighter than ``min_weight`` get it instead in
    the centroid's denominator (no division by 0)."""
    x, lab = jnp.asarray(x), jnp.asarray(lab)
    n = int(lab.max()) + 1
    w = jnp.ones(x.shape[0], x.dtype) if weights is None else jnp.asarray(weights, x.dtype)
    wc = jax.ops.segment_sum(w, lab, num_segments=n)
    centroids = cluster_centroids(x, lab, n, w, jnp.maximum(wc, min_weight))
    return cluster_ranges(lab, n), centroids, wc


def from_matrix(ranges_i, ranges_j, keep):
    """The ranges 6-tuple of a block-sparse reduction that computes the (i-cluster,
    j-cluster) blocks where ``keep`` is True.

    Args:
      ranges_i: ``(Mc, 2)`` index ranges of the i clusters; ranges_j: ``(Nc, 2)``.
      keep: ``(Mc, Nc)`` boolean matrix.

    Returns:
      ``(ranges_i, slices_i, redranges_j, ranges_j, slices_j, redranges_i)``: for i
      cluster k, the j ranges ``redranges_j[slices_i[k-1]:slices_i[k]]`` (``slices_i[-1]``
      read as 0), and the same for the j clusters through ``keep``'s transpose.

    Raises:
      ShapeError: ``keep`` not ``(Mc, Nc)``.
    """
    ranges_i, ranges_j, keep = np.asarray(ranges_i), np.asarray(ranges_j), np.asarray(keep, dtype=bool)
    if keep.shape != (len(ranges_i), len(ranges_j)):
        raise ShapeError(f"from_matrix: keep must be ({len(ranges_i)}, {len(ranges_j)}) for these ranges, "
                         f"got {keep.shape}")
    _, cols = np.nonzero(keep)  # row-major: the j clusters of each i cluster, in order
    _, rows_t = np.nonzero(keep.T)  # the i clusters of each j cluster
    return tuple(map(_index, (ranges_i, np.cumsum(keep.sum(1)), ranges_j[cols].reshape(-1, 2),
                              ranges_j, np.cumsum(keep.sum(0)), ranges_i[rows_t].reshape(-1, 2))))


def swap_axes(ranges):
    """The 6-tuple with its i and j triplets exchanged (for the transposed reduction);
    None stays None."""
    if ranges is None:
        return None
    return tuple(ranges[3:6]) + tuple(ranges[0:3])
