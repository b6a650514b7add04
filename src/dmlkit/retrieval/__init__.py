"""Using a trained model: export (TorchScript / ONNX), an index of embeddings (exact; faiss
optional), search by image, match thresholds from verification metrics, a small HTTP service.

    from dmlkit.retrieval import Retriever
    retriever = Retriever.from_checkpoint("runs/demo-.../checkpoints/best.pt")
"""

from dmlkit.retrieval.index import BACKENDS, EmbeddingIndex
from dmlkit.retrieval.model import EvaluatedModel, ModelBundle, bundle_from_checkpoint
from dmlkit.retrieval.preprocess import Preprocessing
from dmlkit.retrieval.retriever import Neighbour, Retriever, open_image
from dmlkit.retrieval.thresholds import calibrate

__all__ = [
    "BACKENDS",
    "EmbeddingIndex",
    "EvaluatedModel",
    "ModelBundle",
    "Neighbour",
    "Preprocessing",
    "Retriever",
    "bundle_from_checkpoint",
    "calibrate",
    "open_image",
]
