"""Connected components of a class map (8-connectivity), written with numpy only."""

from __future__ import annotations

import numpy as np

_HALF_NEIGHBORHOOD = ((0, 1), (1, -1), (1, 0), (1, 1))


def label_components(classes: np.ndarray, foreground: np.ndarray) -> tuple[np.ndarray, int]:
    """Label the 8-connected regions of equal class among the ``foreground`` pixels.

    ``classes`` is an integer [H, W] map, ``foreground`` a boolean [H, W] mask; two foreground
    pixels join when they touch (diagonals included) and share a class. Returns an int [H, W]
    map with -1 off the foreground and 0..n-1 on it (numbered in raster order of each
    region's first pixel), and n.
    """
    if classes.shape != foreground.shape or classes.ndim != 2:
        raise ValueError(
            f"classes and foreground must be 2-D and alike, got {classes.shape} and "
            f"{foreground.shape}"
        )
    h, w = classes.shape
    index = np.arange(h * w).reshape(h, w)
    src_parts, dst_parts = [], []
    for dy, dx in _HALF_NEIGHBORHOOD:
        a = (slice(0, h - dy), slice(max(-dx, 0), w - max(dx, 0)))
        b = (slice(dy, h), slice(max(dx, 0), w - max(-dx, 0)))
        joined = foreground[a] & foreground[b] & (classes[a] == classes[b])
        src_parts.append(index[a][joined])
        dst_parts.append(index[b][joined])
    src, dst = np.concatenate(src_parts), np.concatenate(dst_parts)
    # Every pixel points at the smallest index known in its region; repeat min-propagation
    # along edges and pointer jumping until nothing changes.
    parent = index.ravel().copy()
    while True:
        low = np.minimum(parent[src], parent[dst])
        updated = parent.copy()
        np.minimum.at(updated, src, low)
        np.minimum.at(updated, dst, low)
        updated = updated[updated]
        updated = updated[updated]
        if np.array_equal(updated, parent):
            break
        parent = updated
    flat_fg = foreground.ravel()
    roots = parent[flat_fg]
    unique_roots, compact = np.unique(roots, return_inverse=True)
    labels = np.full(h * w, -1, dtype=np.int64)
    labels[flat_fg] = compact
    return labels.reshape(h, w), int(unique_roots.size)
