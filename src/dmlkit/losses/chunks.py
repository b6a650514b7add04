"""Row chunks that bound the memory of per-anchor work on ``(R, R)`` slices.

Rules that look at triplets ``(a, p, n)`` need, for anchor ``a``, an ``(R, R)`` table over
(positive, negative) reference pairs. :func:`row_chunks` cuts the ``B`` anchors into slices of at
most ``budget // (R R)`` rows (at least one), so no ``B x R x R`` tensor is ever allocated: memory
is O(budget + R R).
"""

from __future__ import annotations

from collections.abc import Iterator

DEFAULT_BUDGET = 1 << 22  # elements of one chunk's (rows, R, R) table: 32 MiB in float64


def row_chunks(rows: int, per_row: int, budget: int = DEFAULT_BUDGET) -> Iterator[slice]:
    """Consecutive slices covering ``range(rows)``, each of at most ``max(1, budget // per_row)``
    rows."""
    step = max(1, budget // max(per_row, 1))
    for start in range(0, rows, step):
        yield slice(start, min(start + step, rows))
