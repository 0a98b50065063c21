"""Optimiser steps over threads: each parameter's update whole on one thread, the parameters
shared out among the threads by size.

An optimiser's update of one parameter is a dozen elementwise passes over it (Adam's moments,
the square root, the division): too little work per call to split one parameter in halves, but
a model's parameters together are worth the second core. Each update reads and writes only its
own parameter's arrays, so the result is exactly the one of the updates run one after the other.
"""

from __future__ import annotations

from numformer.ops import _threads

# passes over a parameter's elements in one update (Adam's: about a dozen ufunc calls): with the
# element count, the work that decides whether sharing the updates out pays
UPDATE_PASSES = 12


def balanced_bins(sizes: list[int], n: int) -> list[list[int]]:
    """Indices of ``sizes`` in at most ``n`` bins of about equal sums: the largest first, each
    into the lightest bin so far; indices ascending within a bin, empty bins left out."""
    if n <= 1 or len(sizes) <= 1:
        return [list(range(len(sizes)))] if sizes else []
    bins, loads = [[] for _ in range(n)], [0] * n
    for i in sorted(range(len(sizes)), key=lambda i: -sizes[i]):
        k = loads.index(min(loads))
        bins[k].append(i)
        loads[k] += sizes[i]
    return [sorted(b) for b in bins if b]


def update_each(items: list[tuple], sizes: list[int], update) -> None:
    """``update(*item)`` for every item, the items shared out among numformer's threads by
    ``sizes`` (their parameters' element counts) when there is enough work; in order on the
    calling thread otherwise. ``update`` must write only its own item's arrays.

    Args:
        items: argument tuples, one per parameter.
        sizes: each item's element count.
        update: called once per item.

    Raises:
        Whatever ``update`` raises (the first error, after every bin has finished)."""
    bins = balanced_bins(sizes, _threads.get_num_threads())
    per_bin = sum(sizes) // max(1, len(bins))

    def run(lo, hi):
        for b in bins[lo:hi]:
            for i in b:
                update(*items[i])

    _threads.parallel_for(len(bins), run, per_bin * UPDATE_PASSES)
