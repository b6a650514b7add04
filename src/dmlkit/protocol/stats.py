"""Mean and Student-t confidence interval of a few runs.

For ``n`` values ``x_1..x_n`` with mean ``m`` and sample standard deviation
``s = sqrt(sum (x_i - m)^2 / (n - 1))``, the two-sided interval at ``level`` is
``m ± t_{(1 + level) / 2, n - 1} * s / sqrt(n)``, with ``t_{q, d}`` the ``q`` quantile of Student's t
with ``d`` degrees of freedom. With one value the half width is undefined (``None``).

The quantile is computed here without SciPy: ``F(x) = 1/2 + integral_0^x f(u) du`` with the density
``f(u) = Gamma((d+1)/2) / (sqrt(d pi) Gamma(d/2)) (1 + u^2/d)^(-(d+1)/2)`` (composite Simpson rule,
4096 intervals), solved for ``F(x) = q`` by Newton's method from 0 (``F`` is concave on ``x >= 0``,
so the iterates increase monotonically to the root).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class Estimate:
    """``mean ± half_width`` over ``n`` runs at confidence ``level`` (``half_width`` ``None`` for
    ``n = 1``)."""

    mean: float
    half_width: float | None
    n: int
    level: float

    def text(self, digits: int = 4) -> str:
        """``"0.1234 ± 0.0056"`` (or the mean alone when the half width is undefined)."""
        if self.half_width is None:
            return f"{self.mean:.{digits}f}"
        return f"{self.mean:.{digits}f} ± {self.half_width:.{digits}f}"


SIMPSON_INTERVALS = 4096


def _t_density(u: float, dof: int) -> float:
    log_norm = math.lgamma((dof + 1) / 2) - math.lgamma(dof / 2) - 0.5 * math.log(dof * math.pi)
    return math.exp(log_norm - (dof + 1) / 2 * math.log1p(u * u / dof))


def _t_cdf(x: float, dof: int) -> float:
    h = x / SIMPSON_INTERVALS
    inner = math.fsum(
        (4 if i % 2 else 2) * _t_density(i * h, dof) for i in range(1, SIMPSON_INTERVALS)
    )
    return 0.5 + h / 3 * (_t_density(0.0, dof) + inner + _t_density(x, dof))


def student_t_quantile(q: float, dof: int) -> float:
    """The ``q`` quantile (``1/2 <= q < 1``) of Student's t with ``dof`` degrees of freedom."""
    if not 0.5 <= q < 1.0 or dof < 1:
        raise ValueError(f"t quantile: expected 1/2 <= q < 1 and dof >= 1, got q={q}, dof={dof}")
    x = 0.0
    for _ in range(200):
        step = (q - _t_cdf(x, dof)) / _t_density(x, dof)
        x += step
        if abs(step) < 1e-12 * max(1.0, x):
            break
    return x


def mean_ci(values: Sequence[float], level: float = 0.95) -> Estimate:
    """Mean and Student-t ``level`` confidence half width of ``values`` (module docstring).

    >>> mean_ci([1.0, 2.0, 3.0]).text(3)
    '2.000 ± 2.484'
    """
    if not 0.0 < level < 1.0:
        raise ValueError(f"confidence level: expected a value in (0, 1), got {level}")
    if len(values) == 0:
        raise ValueError("mean_ci: expected at least one value, got none")
    if not all(math.isfinite(v) for v in values):
        raise ValueError(f"mean_ci: expected finite values, got {list(values)}")
    n = len(values)
    mean = math.fsum(values) / n
    if n == 1:
        return Estimate(mean, None, 1, level)
    std = math.sqrt(math.fsum((v - mean) ** 2 for v in values) / (n - 1))
    quantile = student_t_quantile((1.0 + level) / 2.0, n - 1)
    return Estimate(mean, quantile * std / math.sqrt(n), n, level)
