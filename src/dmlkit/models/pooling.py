"""Global pooling: a backbone's feature map or token sequence -> one feature vector per image.

Layouts and modes (``F`` = channels ``C``; memory O(B C), no copy of the input):

- ``"map"``, ``x (B, C, H, W)`` from a CNN, reduced over the H x W positions:
    ``avg``: ``f_c = (1 / HW) sum_hw x_chw``;  ``max``: ``f_c = max_hw x_chw``;
    ``avg+max``: ``f = avg + max``, the **sum** of the two (as the Proxy-Anchor reference code
    does), so ``F`` stays ``C`` (a concatenation would double it).
- ``"tokens"``, ``x (B, L, C)`` from a vision transformer whose first ``P`` tokens are prefix
  tokens (class / register tokens): ``token``: ``f = x[:, 0]`` (the class token);
  ``avg``, ``max``, ``avg+max`` as above over the ``L - P`` patch tokens.
- ``"vector"``, ``x (B, C)`` already pooled (MLP backbones): ``none``, the identity.

The reductions use ``mean``/``amax`` over dimensions, which work on channels-last tensors and
keep the input dtype under autocast.
"""

from __future__ import annotations

from torch import Tensor, nn

POOLINGS: dict[str, tuple[str, ...]] = {
    "map": ("avg", "max", "avg+max"),
    "tokens": ("token", "avg", "max", "avg+max"),
    "vector": ("none",),
}
NDIM = {"map": 4, "tokens": 3, "vector": 2}


class GlobalPool(nn.Module):
    """Pool ``x`` of ``layout`` with ``mode`` (module docstring): ``(B, ...) -> (B, C)``."""

    def __init__(self, mode: str, layout: str = "map", num_prefix_tokens: int = 0) -> None:
        super().__init__()
        if layout not in POOLINGS:
            raise ValueError(f"layout: expected one of {tuple(POOLINGS)}, got {layout!r}")
        if mode not in POOLINGS[layout]:
            raise ValueError(
                f"pooling: expected one of {POOLINGS[layout]} for a backbone with {layout} "
                f"output, got {mode!r}"
            )
        if num_prefix_tokens < 0 or (layout != "tokens" and num_prefix_tokens):
            raise ValueError(
                f"num_prefix_tokens: expected 0 (or >= 0 for tokens), got {num_prefix_tokens}"
            )
        if mode == "token" and num_prefix_tokens < 1:
            raise ValueError("pooling 'token' needs a class token (num_prefix_tokens >= 1)")
        self.mode = mode
        self.layout = layout
        self.num_prefix_tokens = num_prefix_tokens

    def forward(self, x: Tensor) -> Tensor:
        if x.ndim != NDIM[self.layout]:
            raise ValueError(
                f"pooling: expected a {NDIM[self.layout]}-D {self.layout} input, "
                f"got shape {tuple(x.shape)}"
            )
        if self.mode == "none":
            return x
        if self.mode == "token":
            return x[:, 0]
        dims: tuple[int, ...]
        if self.layout == "tokens":
            x, dims = x[:, self.num_prefix_tokens :], (1,)
        else:
            dims = (2, 3)
        if self.mode == "avg":
            return x.mean(dim=dims)
        if self.mode == "max":
            return x.amax(dim=dims)
        return x.mean(dim=dims) + x.amax(dim=dims)

    def extra_repr(self) -> str:
        return f"mode={self.mode!r}, layout={self.layout!r}, prefix={self.num_prefix_tokens}"
