"""The model registry and ``create_model``.

    model = create_model("resnet50", embedding_dim=512, pretrained="resnet50.pth", frozen_bn=True)

Every name in :data:`MODELS` builds an :class:`EmbeddingModel` from one backbone builder
(``@register_backbone(name)`` on a function ``(**options) -> BackboneSpec``) with the common
arguments of :func:`create_model`; further keyword arguments go to the backbone builder.

``pretrained`` is a local file (:mod:`dmlkit.models.weights`), loaded with strict key matching
into the backbone (after the builder's key renaming and without the ImageNet classifier's keys),
or into the whole model when the file is an ``EmbeddingModel`` state dict (keys ``backbone.*``
and ``head.*``).
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from torch import nn

from dmlkit.core.registry import Registry
from dmlkit.models.embedding import EmbeddingModel
from dmlkit.models.head import EmbeddingHead
from dmlkit.models.multihead import MultiHeadEmbeddingModel, check_head_dims
from dmlkit.models.pooling import GlobalPool
from dmlkit.models.weights import load_state_dict_strict, read_state_dict

MODELS: Registry[EmbeddingModel] = Registry("model")


@dataclass
class BackboneSpec:
    """A backbone module and how to pool it and load weights into it.

    ``layout`` (``"map"``, ``"tokens"``, ``"vector"``) and ``num_prefix_tokens`` describe its
    output (:mod:`dmlkit.models.pooling`), ``num_features`` its channels ``F``.
    ``classifier_keys``: key prefixes of the ImageNet classifier that weight files carry and the
    backbone lacks (dropped on loading); ``rename_key`` maps a file's key names to the module's.
    """

    module: nn.Module
    num_features: int
    layout: str = "map"
    default_pooling: str = "avg"
    num_prefix_tokens: int = 0
    classifier_keys: tuple[str, ...] = ()
    rename_key: Callable[[str], str] | None = None
    input_ndims: tuple[int, ...] = (4,)


def load_pretrained(model: EmbeddingModel, path: str | Path, spec: BackboneSpec) -> None:
    """Load the weights file ``path`` into ``model`` (module docstring)."""
    state = read_state_dict(path)
    if any(k.startswith("backbone.") for k in state) and any(k.startswith("head.") for k in state):
        load_state_dict_strict(model, state, f"pretrained {path} (an embedding model)")
        return
    state = {k: v for k, v in state.items() if not k.startswith(spec.classifier_keys)}
    if spec.rename_key is not None:
        state = {spec.rename_key(k): v for k, v in state.items()}
    load_state_dict_strict(model.backbone, state, f"pretrained {path} (backbone weights)")


def register_backbone(
    name: str,
) -> Callable[[Callable[..., BackboneSpec]], Callable[..., BackboneSpec]]:
    """Register ``name`` in :data:`MODELS` as the embedding model over the decorated builder."""

    def deco(build: Callable[..., BackboneSpec]) -> Callable[..., BackboneSpec]:
        def factory(
            embedding_dim: int = 128,
            pretrained: str | Path | None = None,
            pooling: str | None = None,
            head_bn: bool = False,
            normalize: bool = True,
            frozen_bn: bool = False,
            freeze_bn_affine: bool = False,
            in_channels: int | None = None,
            heads: Mapping[str, int] | None = None,
            **options: Any,
        ) -> EmbeddingModel:
            if in_channels is not None:
                if (
                    isinstance(in_channels, bool)
                    or not isinstance(in_channels, int)
                    or in_channels < 1
                ):
                    raise ValueError(f"in_channels: expected a positive int, got {in_channels!r}")
                options["in_channels"] = in_channels
            spec = build(**options)
            pool = GlobalPool(
                spec.default_pooling if pooling is None else pooling,
                spec.layout,
                spec.num_prefix_tokens,
            )
            model: EmbeddingModel
            if heads is None:
                model = EmbeddingModel(
                    spec.module,
                    pool,
                    EmbeddingHead(spec.num_features, embedding_dim, head_bn, normalize),
                    frozen_bn=frozen_bn,
                    freeze_bn_affine=freeze_bn_affine,
                    input_ndims=spec.input_ndims,
                )
            else:
                model = MultiHeadEmbeddingModel(
                    spec.module,
                    pool,
                    {
                        name: EmbeddingHead(spec.num_features, dim, head_bn, normalize)
                        for name, dim in check_head_dims(heads, embedding_dim).items()
                    },
                    frozen_bn=frozen_bn,
                    freeze_bn_affine=freeze_bn_affine,
                    input_ndims=spec.input_ndims,
                )
            if pretrained is not None:
                load_pretrained(model, pretrained, spec)
            return model

        factory.__name__ = name
        factory.__doc__ = build.__doc__
        # what the factory accepts: its own arguments, the builder's options, and any keyword
        # when the builder takes any (torchvision's constructors' own options)
        own = list(inspect.signature(factory).parameters.values())[:-1]  # without **options
        built = inspect.signature(build).parameters.values()
        known = {p.name for p in own}
        extra = [
            p.replace(kind=p.KEYWORD_ONLY)
            for p in built
            if p.name not in known and p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)
        ]
        rest = [p for p in built if p.kind is p.VAR_KEYWORD]
        factory.__signature__ = inspect.Signature([*own, *extra, *rest])  # type: ignore[attr-defined]
        MODELS.register(name)(factory)
        return build

    return deco


def create_model(
    name: str,
    embedding_dim: int = 128,
    pretrained: str | Path | None = None,
    pooling: str | None = None,
    head_bn: bool = False,
    normalize: bool = True,
    frozen_bn: bool = False,
    in_channels: int | None = None,
    **kwargs: Any,
) -> EmbeddingModel:
    """The embedding model ``name`` (``dmlkit list`` shows the names).

    ``embedding_dim``: D. ``pretrained``: a local weights file or ``None`` (random init).
    ``pooling``: ``avg``, ``max``, ``avg+max`` (sum), ``token`` (ViT class token) or ``None``
    for the backbone's default. ``head_bn``: BatchNorm1d after the linear layer. ``normalize``:
    unit-norm embeddings. ``frozen_bn``: backbone BatchNorm in eval mode through ``train()``
    (``freeze_bn_affine=True`` also freezes its affine parameters). ``in_channels``: image
    channels (``None``: the backbone's default, 1 for the small models, 3 for ImageNet ones).
    ``heads={name: D_h, ...}`` (in ``kwargs``) builds a
    :class:`~dmlkit.models.multihead.MultiHeadEmbeddingModel` with one head per entry, each like
    the single head (``head_bn``, ``normalize``), ``Σ D_h == embedding_dim``. Further ``kwargs``
    go to the backbone builder.
    """
    return MODELS.create(
        name,
        embedding_dim=embedding_dim,
        pretrained=pretrained,
        pooling=pooling,
        head_bn=head_bn,
        normalize=normalize,
        frozen_bn=frozen_bn,
        in_channels=in_channels,
        **kwargs,
    )
