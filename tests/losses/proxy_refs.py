"""Explicit-loop references for the proxy losses (float64; samples, proxies and classes
enumerated by hand). Proxy ``j`` belongs to class ``j // K``."""

from __future__ import annotations

import math

from torch import Tensor


def cosine(a: Tensor, b: Tensor) -> list[list[float]]:
    return [
        [float(a[i] @ b[j] / (a[i].norm() * b[j].norm())) for j in range(b.shape[0])]
        for i in range(a.shape[0])
    ]


def log_sum_exp(values: list[float]) -> float:
    m = max(values)
    return m + math.log(sum(math.exp(v - m) for v in values))


def proxy_softmax(
    x: Tensor, y: list[int], proxies: Tensor, k: int, scale: float, exclude_positives: bool
) -> float:
    s = cosine(x, proxies)
    total = 0.0
    for i, label in enumerate(y):
        own = [scale * s[i][j] for j in range(len(s[i])) if j // k == label]
        den = [
            scale * s[i][j] for j in range(len(s[i])) if not (exclude_positives and j // k == label)
        ]
        total += log_sum_exp(den) - log_sum_exp(own)
    return total / len(y)


def proxy_anchor(
    x: Tensor, y: list[int], proxies: Tensor, k: int, margin: float, alpha: float
) -> float:
    s = cosine(x, proxies)
    pos_sum, with_pos, neg_sum = 0.0, 0, 0.0
    for j in range(proxies.shape[0]):
        pos = [math.exp(-alpha * (s[i][j] - margin)) for i in range(len(y)) if y[i] == j // k]
        neg = [math.exp(alpha * (s[i][j] + margin)) for i in range(len(y)) if y[i] != j // k]
        if pos:
            with_pos += 1
            pos_sum += math.log(1.0 + sum(pos))
        neg_sum += math.log(1.0 + sum(neg))
    return pos_sum / max(with_pos, 1) + neg_sum / proxies.shape[0]


def soft_triple(
    x: Tensor,
    y: list[int],
    proxies: Tensor,
    k: int,
    scale: float,
    gamma: float,
    tau: float,
    margin: float,
) -> float:
    s = cosine(x, proxies)
    num_classes = proxies.shape[0] // k
    total = 0.0
    for i, label in enumerate(y):
        logits = []
        for c in range(num_classes):
            sims = [s[i][c * k + t] for t in range(k)]
            weights = [math.exp(v / gamma) for v in sims]
            class_sim = sum(w * v for w, v in zip(weights, sims, strict=True)) / sum(weights)
            logits.append(scale * (class_sim - (margin if c == label else 0.0)))
        total += log_sum_exp(logits) - logits[label]
    loss = total / len(y)
    if tau > 0 and k > 1:
        p = cosine(proxies, proxies)
        spread = sum(
            math.sqrt(2.0 + 1e-5 - 2.0 * p[c * k + t][c * k + u])
            for c in range(num_classes)
            for t in range(k)
            for u in range(t + 1, k)
        )
        loss += tau * spread / (num_classes * k * (k - 1))
    return loss
