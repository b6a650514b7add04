"""Losses: the pair engine (terms x miners x aggregators), triplet family, proxy family, presets.

Every loss is an ``nn.Module`` with ``forward(emb, labels, ref_emb=None, ref_labels=None)``
returning a 0-dim tensor connected to the graph. Build any of them by name with :func:`create`.
"""

from dmlkit.losses import angular as _angular  # noqa: F401  (registers the angular loss)
from dmlkit.losses import dro as _dro  # noqa: F401  (registers the DRO losses)
from dmlkit.losses import margin as _margin  # noqa: F401  (registers the margin loss)
from dmlkit.losses import presets as _presets  # noqa: F401  (registers the pair presets)
from dmlkit.losses import presets_extended as _presets_extended  # noqa: F401  (more presets)
from dmlkit.losses import proxy_losses as _proxy_losses  # noqa: F401  (registers proxy losses)
from dmlkit.losses import triplet as _triplet  # noqa: F401  (registers the triplet losses)
from dmlkit.losses.aggregators import (
    AnchorLogSumExpAggregator,
    AnchorMeanAggregator,
    LiftedSongAggregator,
    PairAggregator,
    PairSumAggregator,
    PerPositiveSoftplusAggregator,
)
from dmlkit.losses.angular import AngularLoss
from dmlkit.losses.dro import DROAggregator, DROPNAggregator, k_from_official
from dmlkit.losses.instance import InstanceLoss
from dmlkit.losses.margin import MarginLoss
from dmlkit.losses.miners import (
    AllPairsMiner,
    DistanceWeightedPairMiner,
    HardestPairMiner,
    MultiSimilarityMiner,
    PairMiner,
    SemiHardPairMiner,
    ThresholdMiner,
    TopKPairMiner,
)
from dmlkit.losses.pair_loss import PairLoss
from dmlkit.losses.proxy import Proxies
from dmlkit.losses.proxy_losses import ProxyAnchorLoss, ProxyLoss, ProxySoftmaxLoss, SoftTripleLoss
from dmlkit.losses.registry import LOSSES, create
from dmlkit.losses.softmax_aggregator import AnchorSoftmaxAggregator
from dmlkit.losses.terms import (
    AngularMarginTerm,
    CircleTerm,
    HingeTerm,
    LinearTerm,
    PairTerm,
    SoftplusTerm,
)
from dmlkit.losses.triplet import BatchHardTripletLoss, TripletLoss
from dmlkit.losses.triplet_sampling import DistanceWeightedSampler, TripletSampler
from dmlkit.losses.uncertainty import (
    ChiSquarePenalty,
    KLBall,
    KLPenalty,
    SampledKL,
    TopK,
    UncertaintySet,
    Uniform,
)
from dmlkit.losses.variance_aggregator import PairVarianceAggregator
from dmlkit.losses.weights import pair_weights

__all__ = [
    "LOSSES",
    "AllPairsMiner",
    "AnchorLogSumExpAggregator",
    "AnchorMeanAggregator",
    "AnchorSoftmaxAggregator",
    "AngularLoss",
    "AngularMarginTerm",
    "BatchHardTripletLoss",
    "ChiSquarePenalty",
    "CircleTerm",
    "DROAggregator",
    "DROPNAggregator",
    "DistanceWeightedPairMiner",
    "DistanceWeightedSampler",
    "HardestPairMiner",
    "HingeTerm",
    "InstanceLoss",
    "KLBall",
    "KLPenalty",
    "LiftedSongAggregator",
    "LinearTerm",
    "MarginLoss",
    "MultiSimilarityMiner",
    "PairAggregator",
    "PairLoss",
    "PairMiner",
    "PairSumAggregator",
    "PairTerm",
    "PairVarianceAggregator",
    "PerPositiveSoftplusAggregator",
    "Proxies",
    "ProxyAnchorLoss",
    "ProxyLoss",
    "ProxySoftmaxLoss",
    "SampledKL",
    "SemiHardPairMiner",
    "SoftTripleLoss",
    "SoftplusTerm",
    "ThresholdMiner",
    "TopK",
    "TopKPairMiner",
    "TripletLoss",
    "TripletSampler",
    "UncertaintySet",
    "Uniform",
    "create",
    "k_from_official",
    "pair_weights",
]
