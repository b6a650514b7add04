"""Explicit-loop references for the pair presets (float64, anchors and pairs enumerated by hand)."""

from __future__ import annotations

import math

from torch import Tensor


def cos(x: Tensor) -> Tensor:
    x = x / x.norm(dim=1, keepdim=True)
    return x @ x.T


def dist(x: Tensor) -> list[list[float]]:
    n = x.shape[0]
    return [[float((x[i] - x[j]).norm()) for j in range(n)] for i in range(n)]


def pairs(labels: list[int], i: int) -> tuple[list[int], list[int]]:
    p = [j for j in range(len(labels)) if j != i and labels[j] == labels[i]]
    n = [j for j in range(len(labels)) if labels[j] != labels[i]]
    return p, n


def lse(values: list[float]) -> float:
    m = max(values)
    return m + math.log(sum(math.exp(v - m) for v in values))


def softplus(z: float) -> float:
    return max(z, 0.0) + math.log1p(math.exp(-abs(z)))


def contrastive(x: Tensor, y: list[int], mp: float = 1.0, mn: float = 0.5) -> float:
    s = cos(x)
    total = 0.0
    for i in range(len(y)):
        p, n = pairs(y, i)
        total += sum(max(mp - float(s[i, j]), 0.0) for j in p)
        total += sum(max(float(s[i, j]) - mn, 0.0) for j in n)
    return total / len(y)


def contrastive_hadsell(x: Tensor, y: list[int], m: float = 1.0) -> float:
    d = dist(x)
    terms = []
    for i in range(len(y)):
        p, n = pairs(y, i)
        terms += [0.5 * d[i][j] ** 2 for j in p] + [0.5 * max(m - d[i][j], 0.0) ** 2 for j in n]
    return sum(terms) / max(len(terms), 1)


def binomial(x: Tensor, y: list[int], a: float = 2.0, b: float = 40.0, lam: float = 0.5) -> float:
    s = cos(x)
    per, count = 0.0, 0
    for i in range(len(y)):
        p, n = pairs(y, i)
        if not p and not n:
            continue
        v = sum(softplus(a * (lam - float(s[i, j]))) for j in p) / max(len(p), 1)
        v += sum(softplus(b * (float(s[i, j]) - lam)) for j in n) / max(len(n), 1)
        per, count = per + v, count + 1
    return per / max(count, 1)


def lifted(x: Tensor, y: list[int], mp: float = 1.0, mn: float = 0.0) -> float:
    s = cos(x)
    total = 0.0
    for i in range(len(y)):
        p, n = pairs(y, i)
        if p and n:
            v = lse([mp - float(s[i, j]) for j in p]) + lse([float(s[i, j]) - mn for j in n])
            total += max(v, 0.0)
    return total / len(y)


def lifted_song(x: Tensor, y: list[int], alpha: float = 1.0) -> float:
    d = dist(x)
    total, count = 0.0, 0
    for i in range(len(y)):
        for j in range(len(y)):
            if i == j or y[i] != y[j]:
                continue
            negs = [alpha - d[i][k] for k in range(len(y)) if y[k] != y[i]]
            negs += [alpha - d[j][k] for k in range(len(y)) if y[k] != y[j]]
            if not negs:
                continue
            total += max(lse(negs) + d[i][j], 0.0) ** 2
            count += 1
    return total / (2 * max(count, 1))


def npair(x: Tensor, y: list[int]) -> float:
    s = x @ x.T
    terms = []
    for i in range(len(y)):
        p, n = pairs(y, i)
        if not n:
            continue
        for j in p:
            terms.append(math.log1p(sum(math.exp(float(s[i, k] - s[i, j])) for k in n)))
    return sum(terms) / max(len(terms), 1)


def ms(
    x: Tensor,
    y: list[int],
    a: float = 2.0,
    b: float = 50.0,
    lam: float = 1.0,
    eps: float | None = 0.1,
) -> float:
    s = cos(x)
    total = 0.0
    for i in range(len(y)):
        p, n = pairs(y, i)
        if eps is not None:
            if not p or not n:
                continue
            min_p = min(float(s[i, j]) for j in p)
            max_n = max(float(s[i, j]) for j in n)
            p = [j for j in p if float(s[i, j]) - eps < max_n]
            n = [j for j in n if float(s[i, j]) + eps > min_p]
        total += math.log1p(sum(math.exp(-a * (float(s[i, j]) - lam)) for j in p)) / a
        total += math.log1p(sum(math.exp(b * (float(s[i, j]) - lam)) for j in n)) / b
    return total / len(y)


def circle(x: Tensor, y: list[int], m: float = 0.4, gamma: float = 80.0) -> float:
    s = cos(x)
    values = []
    for i in range(len(y)):
        p, n = pairs(y, i)
        if not p or not n:
            continue
        lp = [-gamma * max(1 + m - float(s[i, j]), 0) * (float(s[i, j]) - 1 + m) for j in p]
        ln = [gamma * max(float(s[i, j]) + m, 0) * (float(s[i, j]) - m) for j in n]
        values.append(softplus(lse(lp) + lse(ln)))
    return sum(values) / max(len(values), 1)


REFERENCES = {
    "contrastive": contrastive,
    "contrastive_hadsell": contrastive_hadsell,
    "binomial": binomial,
    "lifted": lifted,
    "lifted_song": lifted_song,
    "npair": npair,
    "ms": ms,
    "ms_official": lambda x, y: ms(x, y, 2.0, 40.0, 0.5, 0.1),
    "circle": circle,
}
