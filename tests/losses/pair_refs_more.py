"""Explicit-loop references for the extended presets (float64; anchors, pairs and negatives
enumerated by hand). Each takes the batch ``x (B, D)``, its labels, and optionally a reference set
``r (R, D)`` with labels ``ry``; without one the batch is its own reference, self excluded."""

from __future__ import annotations

import math

from torch import Tensor


def cosine(a: Tensor, b: Tensor) -> float:
    return float(a @ b) / (float(a.norm()) * float(b.norm()))


def neg_sq_euclidean(a: Tensor, b: Tensor) -> float:
    return -float(((a - b) ** 2).sum())


def snr(a: Tensor, b: Tensor) -> float:
    """``var(a - b) / var(a)`` over the features, by hand."""

    def var(v: list[float]) -> float:
        m = sum(v) / len(v)
        return sum((t - m) ** 2 for t in v) / (len(v) - 1)

    av, bv = a.tolist(), b.tolist()
    return var([p - q for p, q in zip(av, bv, strict=True)]) / var(av)


def lse(values: list[float]) -> float:
    m = max(values)
    return m + math.log(sum(math.exp(v - m) for v in values))


Ref = tuple[Tensor, list[int]] | None


def rows(x: Tensor, y: list[int], ref: Ref) -> list[tuple[int, list[int], list[int]]]:
    """Per anchor ``i``: ``(i, positive columns, negative columns)``."""
    ry = y if ref is None else ref[1]
    out = []
    for i in range(len(y)):
        cols = [j for j in range(len(ry)) if ref is not None or j != i]
        out.append((i, [j for j in cols if ry[j] == y[i]], [j for j in cols if ry[j] != y[i]]))
    return out


def ref_rows(x: Tensor, ref: Ref) -> Tensor:
    return x if ref is None else ref[0]


def supcon(x: Tensor, y: list[int], ref: Ref = None, tau: float = 0.1) -> float:
    r = ref_rows(x, ref)
    total, count = 0.0, 0
    for i, p, n in rows(x, y, ref):
        if not p:
            continue
        logits = {j: cosine(x[i], r[j]) / tau for j in p + n}
        total += lse(list(logits.values())) - sum(logits[j] for j in p) / len(p)
        count += 1
    return total / max(count, 1)


def ntxent(x: Tensor, y: list[int], ref: Ref = None, tau: float = 0.07) -> float:
    r = ref_rows(x, ref)
    terms = []
    for i, p, n in rows(x, y, ref):
        for j in p if n else []:
            s_p = cosine(x[i], r[j])
            terms.append(math.log1p(sum(math.exp((cosine(x[i], r[k]) - s_p) / tau) for k in n)))
    return sum(terms) / max(len(terms), 1)


def nca(
    x: Tensor, y: list[int], ref: Ref = None, scale: float = 1.0, sim=neg_sq_euclidean
) -> float:
    r = ref_rows(x, ref)
    total, count = 0.0, 0
    for i, p, n in rows(x, y, ref):
        if not p:
            continue
        z = {j: scale * sim(x[i], r[j]) for j in p + n}
        total += lse(list(z.values())) - lse([z[j] for j in p])
        count += 1
    return total / max(count, 1)


def instance(x: Tensor, y: list[int], gamma: float = 64.0) -> float:
    classes = sorted(set(y))
    total = 0.0
    for i in range(len(y)):
        z = [gamma * cosine(x[i], x[j]) for j in range(len(y))]
        total += lse(z) - z[classes.index(y[i])]
    return total / len(y)


def intra_pair_variance(
    x: Tensor, y: list[int], ref: Ref = None, pos_eps: float = 0.01, neg_eps: float = 0.01
) -> float:
    r = ref_rows(x, ref)
    ps, ns = [], []
    for i, p, n in rows(x, y, ref):
        ps += [cosine(x[i], r[j]) for j in p]
        ns += [cosine(x[i], r[j]) for j in n]
    out = 0.0
    if ps:
        mu = sum(ps) / len(ps)
        out += sum(max((1 - pos_eps) * mu - s, 0.0) ** 2 for s in ps) / len(ps)
    if ns:
        mu = sum(ns) / len(ns)
        out += sum(max(s - (1 + neg_eps) * mu, 0.0) ** 2 for s in ns) / len(ns)
    return out


def _nonzero_mean(values: list[float]) -> float:
    kept = [v for v in values if v > 0]
    return sum(kept) / max(len(kept), 1)


def snr_contrastive(
    x: Tensor, y: list[int], ref: Ref = None, pos_margin: float = 0.0, neg_margin: float = 1.0
) -> float:
    r = ref_rows(x, ref)
    lp, ln = [], []
    for i, p, n in rows(x, y, ref):
        lp += [max(snr(x[i], r[j]) - pos_margin, 0.0) for j in p]
        ln += [max(neg_margin - snr(x[i], r[j]), 0.0) for j in n]
    return _nonzero_mean(lp) + _nonzero_mean(ln)


def tuplet_margin(
    x: Tensor, y: list[int], ref: Ref = None, margin_deg: float = 5.73, scale: float = 64.0
) -> float:
    r = ref_rows(x, ref)
    beta = math.radians(margin_deg)
    terms = []
    for i, p, n in rows(x, y, ref):
        for j in p if n else []:
            shifted = math.cos(math.acos(cosine(x[i], r[j])) - beta)
            terms.append(
                math.log1p(sum(math.exp(scale * (cosine(x[i], r[k]) - shifted)) for k in n))
            )
    return sum(terms) / max(len(terms), 1)


def angular(x: Tensor, y: list[int], ref: Ref = None, alpha_deg: float = 40.0) -> float:
    r = ref_rows(x, ref)
    t = math.tan(math.radians(alpha_deg)) ** 2
    unit = [v / v.norm() for v in x]
    runit = [v / v.norm() for v in r]
    terms = []
    for i, p, n in rows(x, y, ref):
        for j in p:
            a, q = unit[i], runit[j]
            f = [4 * t * float((a + q) @ runit[k]) - 2 * (1 + t) * float(a @ q) for k in n]
            terms.append(math.log1p(sum(math.exp(v) for v in f)))
    return sum(terms) / max(len(terms), 1)


def tcm(
    x: Tensor,
    y: list[int],
    ref: Ref = None,
    lambdas: tuple[float, float] = (1.0, 1.0),
    margins: tuple[float, float] = (0.9, 0.5),
) -> float:
    r = ref_rows(x, ref)
    lp, ln = [], []
    for i, p, n in rows(x, y, ref):
        lp += [margins[0] - cosine(x[i], r[j]) for j in p if cosine(x[i], r[j]) < margins[0]]
        ln += [cosine(x[i], r[j]) - margins[1] for j in n if cosine(x[i], r[j]) > margins[1]]
    pos = sum(lp) / len(lp) if lp else 0.0
    neg = sum(ln) / len(ln) if ln else 0.0
    return lambdas[0] * pos + lambdas[1] * neg


REFERENCES = {
    "supcon": supcon,
    "ntxent": ntxent,
    "nca": nca,
    "intra_pair_variance": intra_pair_variance,
    "snr_contrastive": snr_contrastive,
    "tuplet_margin": tuplet_margin,
    "angular": angular,
    "tcm": tcm,
}
"""References that also take a reference set; ``instance`` (batch only) is separate."""
