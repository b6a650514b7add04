"""Losses: the pair engine (terms x miners x aggregators), triplet family, proxy family, presets.

Every loss is an ``nn.Module`` with ``forward(emb, labels, ref_emb=None, ref_labels=None)``
returning a 0-dim tensor connected to the graph. Build any of them by name with :func:`create`.
"""

from dmlkit.losses import angular as _angular  # noqa: F401  (registers the angular loss)
from dmlkit.losses import ap_surrogates as _ap_surrogates  # noqa: F401  (registers AP losses)
from dmlkit.losses import dro as _dro  # noqa: F401  (registers the DRO losses)
from dmlkit.losses import dynamic_soft_margin as _dsm  # noqa: F401  (registers it)
from dmlkit.losses import histogram as _histogram  # noqa: F401  (registers it)
from dmlkit.losses import manifold as _manifold  # noqa: F401  (registers it)
from dmlkit.losses import margin as _margin  # noqa: F401  (registers the margin loss)
from dmlkit.losses import margin_softmax as _margin_softmax  # noqa: F401  (registers face losses)
from dmlkit.losses import presets as _presets  # noqa: F401  (registers the pair presets)
from dmlkit.losses import presets_extended as _presets_extended  # noqa: F401  (more presets)
from dmlkit.losses import proxy_losses as _proxy_losses  # noqa: F401  (registers proxy losses)
from dmlkit.losses import ranked_list as _ranked_list  # noqa: F401  (registers ranked list)
from dmlkit.losses import self_supervised as _self_supervised  # noqa: F401  (registers the wrapper)
from dmlkit.losses import triplet as _triplet  # noqa: F401  (registers the triplet losses)
from dmlkit.losses import vicreg as _vicreg  # noqa: F401  (registers VICReg)
from dmlkit.losses.aggregators import (
    AnchorLogSumExpAggregator,
    AnchorMeanAggregator,
    LiftedSongAggregator,
    PairAggregator,
    PairSumAggregator,
    PerPositiveSoftplusAggregator,
)
from dmlkit.losses.angular import AngularLoss
from dmlkit.losses.ap_surrogates import APSurrogateLoss, FastAPLoss, PNPLoss, SmoothAPLoss
from dmlkit.losses.dro import DROAggregator, DROPNAggregator, k_from_official
from dmlkit.losses.dynamic_soft_margin import DynamicSoftMarginLoss
from dmlkit.losses.histogram import HistogramLoss
from dmlkit.losses.instance import InstanceLoss
from dmlkit.losses.manifold import ManifoldLoss
from dmlkit.losses.margin import MarginLoss
from dmlkit.losses.margin_softmax import (
    AdditiveAngularMargin,
    AdditiveCosineMargin,
    MarginSoftmaxLoss,
    MultiplicativeAngularMargin,
    TargetTransform,
)
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
from dmlkit.losses.miners_more import (
    AngularMiner,
    BatchEasyHardMiner,
    HDCMiner,
    PairMarginMiner,
    UniformHistogramMiner,
)
from dmlkit.losses.pair_loss import PairLoss
from dmlkit.losses.proxy import Proxies
from dmlkit.losses.proxy_losses import ProxyAnchorLoss, ProxyLoss, ProxySoftmaxLoss, SoftTripleLoss
from dmlkit.losses.registry import LOSSES, MINERS, create
from dmlkit.losses.regularized import Regularized
from dmlkit.losses.regularizers import (
    REGULARIZERS,
    CenterInvariantRegularizer,
    LpRegularizer,
    RegularFaceRegularizer,
    Regularizer,
    SparseCentersRegularizer,
    ZeroMeanRegularizer,
)
from dmlkit.losses.self_supervised import SelfSupervisedLoss
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
from dmlkit.losses.vicreg import VICRegLoss
from dmlkit.losses.views import ViewsLoss
from dmlkit.losses.weights import pair_weights

__all__ = [
    "LOSSES",
    "MINERS",
    "REGULARIZERS",
    "APSurrogateLoss",
    "AdditiveAngularMargin",
    "AdditiveCosineMargin",
    "AllPairsMiner",
    "AnchorLogSumExpAggregator",
    "AnchorMeanAggregator",
    "AnchorSoftmaxAggregator",
    "AngularLoss",
    "AngularMarginTerm",
    "AngularMiner",
    "BatchEasyHardMiner",
    "BatchHardTripletLoss",
    "CenterInvariantRegularizer",
    "ChiSquarePenalty",
    "CircleTerm",
    "DROAggregator",
    "DROPNAggregator",
    "DistanceWeightedPairMiner",
    "DistanceWeightedSampler",
    "DynamicSoftMarginLoss",
    "FastAPLoss",
    "HDCMiner",
    "HardestPairMiner",
    "HingeTerm",
    "HistogramLoss",
    "InstanceLoss",
    "KLBall",
    "KLPenalty",
    "LiftedSongAggregator",
    "LinearTerm",
    "LpRegularizer",
    "ManifoldLoss",
    "MarginLoss",
    "MarginSoftmaxLoss",
    "MultiSimilarityMiner",
    "MultiplicativeAngularMargin",
    "PNPLoss",
    "PairAggregator",
    "PairLoss",
    "PairMarginMiner",
    "PairMiner",
    "PairSumAggregator",
    "PairTerm",
    "PairVarianceAggregator",
    "PerPositiveSoftplusAggregator",
    "Proxies",
    "ProxyAnchorLoss",
    "ProxyLoss",
    "ProxySoftmaxLoss",
    "RegularFaceRegularizer",
    "Regularized",
    "Regularizer",
    "SampledKL",
    "SelfSupervisedLoss",
    "SemiHardPairMiner",
    "SmoothAPLoss",
    "SoftTripleLoss",
    "SoftplusTerm",
    "SparseCentersRegularizer",
    "TargetTransform",
    "ThresholdMiner",
    "TopK",
    "TopKPairMiner",
    "TripletLoss",
    "TripletSampler",
    "UncertaintySet",
    "Uniform",
    "UniformHistogramMiner",
    "VICRegLoss",
    "ViewsLoss",
    "ZeroMeanRegularizer",
    "create",
    "k_from_official",
    "pair_weights",
]
