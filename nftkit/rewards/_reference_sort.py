"""NumPy 1.23's default ``argsort`` (introsort, ``kind="quicksort"``), in plain Python.

GenEval's evaluate_images.py orders each class's detections with ``np.argsort(scores)[::-1]``
under numpy 1.23.1 (its environment.yml). That sort is not stable, so exactly tied scores come
out in an order fixed by the algorithm, and newer numpy builds (SIMD sorts) order ties
differently. This module reproduces numpy 1.23's algorithm step by step (median-of-three
quicksort partitions above 16 elements, insertion sort below, heapsort past the depth limit)
on float32 values, so ties land where the reference puts them.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

SMALL_QUICKSORT = 15
"""numpy partitions while a range spans more than this many steps (more than 16 elements)."""


def _less(a: float, b: float) -> bool:
    """numpy's float ``less``: NaNs sort to the end."""
    return a < b or (b != b and a == a)


def _heapsort(v: Sequence[float], idx: list[int], start: int, n: int) -> None:
    """numpy's aheapsort on idx[start:start + n] (1-based heap indexing)."""

    def get(k: int) -> int:
        return idx[start + k - 1]

    def put(k: int, value: int) -> None:
        idx[start + k - 1] = value

    def sift_down(i: int, tmp: int, size: int) -> None:
        j = i << 1
        while j <= size:
            if j < size and _less(v[get(j)], v[get(j + 1)]):
                j += 1
            if _less(v[tmp], v[get(j)]):
                put(i, get(j))
                i, j = j, j + j
            else:
                break
        put(i, tmp)

    for low in range(n >> 1, 0, -1):
        sift_down(low, get(low), n)
    while n > 1:
        tmp = get(n)
        put(n, get(1))
        n -= 1
        sift_down(1, tmp, n)


def argsort_numpy123(values: Sequence[float]) -> list[int]:
    """Indices that sort ``values`` ascending, exactly as numpy 1.23's ``np.argsort`` on float32.

    Values are rounded to float32 first (the detector's score dtype).
    """
    v = [float(x) for x in np.asarray(values, dtype=np.float32)]
    num = len(v)
    idx = list(range(num))
    if num < 2:
        return idx
    pl, pr = 0, num - 1
    stack: list[tuple[int, int, int]] = []
    cdepth = (num.bit_length() - 1) * 2
    while True:
        if cdepth < 0:
            _heapsort(v, idx, pl, pr - pl + 1)
        else:
            while pr - pl > SMALL_QUICKSORT:
                pm = pl + ((pr - pl) >> 1)
                if _less(v[idx[pm]], v[idx[pl]]):
                    idx[pm], idx[pl] = idx[pl], idx[pm]
                if _less(v[idx[pr]], v[idx[pm]]):
                    idx[pr], idx[pm] = idx[pm], idx[pr]
                if _less(v[idx[pm]], v[idx[pl]]):
                    idx[pm], idx[pl] = idx[pl], idx[pm]
                vp = v[idx[pm]]
                pi, pj = pl, pr - 1
                idx[pm], idx[pj] = idx[pj], idx[pm]
                while True:
                    pi += 1
                    while _less(v[idx[pi]], vp):
                        pi += 1
                    pj -= 1
                    while _less(vp, v[idx[pj]]):
                        pj -= 1
                    if pi >= pj:
                        break
                    idx[pi], idx[pj] = idx[pj], idx[pi]
                pk = pr - 1
                idx[pi], idx[pk] = idx[pk], idx[pi]
                cdepth -= 1
                if pi - pl < pr - pi:  # push the larger partition, go on with the smaller
                    stack.append((pi + 1, pr, cdepth))
                    pr = pi - 1
                else:
                    stack.append((pl, pi - 1, cdepth))
                    pl = pi + 1
            for pi in range(pl + 1, pr + 1):  # insertion sort
                vi = idx[pi]
                vp = v[vi]
                pj = pi
                while pj > pl and _less(vp, v[idx[pj - 1]]):
                    idx[pj] = idx[pj - 1]
                    pj -= 1
                idx[pj] = vi
        if not stack:
            return idx
        pl, pr, cdepth = stack.pop()


def descending_order(scores: Sequence[float]) -> list[int]:
    """GenEval's detection order: ``np.argsort(scores)[::-1]`` under numpy 1.23."""
    return argsort_numpy123(scores)[::-1]
