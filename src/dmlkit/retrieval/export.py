"""Export the evaluated model (the run's view of its output, L2-normalised for cosine runs) as
TorchScript or ONNX, with a JSON sidecar describing its input and output.

    export_model(bundle, "torchscript", "out/")   # out/model.pt   + out/model.json
    export_model(bundle, "onnx", "out/")          # out/model.onnx + out/model.json

Both take ``images (B, C, H, W)`` float32, already preprocessed (the sidecar's
``preprocessing``, :class:`~dmlkit.retrieval.preprocess.Preprocessing`), with a dynamic batch
axis ``B``, and return ``embeddings (B, D)`` float32. TorchScript is traced
(``torch.jit.trace``); ONNX uses ``torch.onnx.export`` with ``dynamo=True`` (``pip install
dmlkit[export]``: onnx, onnxscript; onnxruntime to run it). The sidecar::

    {"format", "file", "input": {"name", "shape": ["batch", C, H, W], "dtype"},
     "output": {"name", "shape": ["batch", D], "dtype"}, "embedding_dim", "normalized",
     "similarity", "preprocessing": {...}, "model": <model name>}
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path
from typing import Any

import torch

from dmlkit.retrieval.model import EvaluatedModel, ModelBundle

FORMATS = {"torchscript": "model.pt", "onnx": "model.onnx"}
INPUT, OUTPUT = "images", "embeddings"


def example_input(bundle: ModelBundle, batch: int = 2) -> torch.Tensor:
    """A random input ``(batch, C, H, W)`` of the model's preprocessing; ``ValueError`` when the
    run's input side is not fixed."""
    prep = bundle.preprocessing
    if prep.size is None:
        raise ValueError(
            "export: the run's images have no fixed size (data.image_size is not set); pass "
            "--set data.image_size=N with the side the model should take"
        )
    generator = torch.Generator().manual_seed(0)
    return torch.randn(batch, prep.channels, prep.size, prep.size, generator=generator)


def export_torchscript(model: EvaluatedModel, example: torch.Tensor, path: Path) -> None:
    """Trace ``model`` on ``example`` and save it (the batch axis stays free: no op depends on
    it)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", torch.jit.TracerWarning)
        warnings.simplefilter("ignore", FutureWarning)  # torch 2.14 deprecates torch.jit
        traced = torch.jit.trace(model, example, check_trace=False)
        traced.save(str(path))


def export_onnx(model: EvaluatedModel, example: torch.Tensor, path: Path) -> None:
    """Export ``model`` to ONNX with a dynamic batch axis (``torch.onnx.export(dynamo=True)``)."""
    for module in ("onnx", "onnxscript"):
        try:
            __import__(module)
        except ImportError as err:
            raise ImportError(
                f"--format onnx needs {module}: pip install 'dmlkit[export]'"
            ) from err
    batch = torch.export.Dim("batch", min=1)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        program = torch.onnx.export(
            model,
            (example,),
            input_names=[INPUT],
            output_names=[OUTPUT],
            dynamic_shapes={"x": {0: batch}},
            dynamo=True,
            verbose=False,
        )
    if program is None:
        raise RuntimeError("torch.onnx.export returned no program")
    program.save(str(path))


def sidecar(bundle: ModelBundle, fmt: str, example: torch.Tensor) -> dict[str, Any]:
    """The JSON description of an exported model (module docstring)."""
    config = bundle.experiment()
    return {
        "format": fmt,
        "file": FORMATS[fmt],
        "input": {"name": INPUT, "shape": ["batch", *example.shape[1:]], "dtype": "float32"},
        "output": {"name": OUTPUT, "shape": ["batch", bundle.embedding_dim], "dtype": "float32"},
        "embedding_dim": bundle.embedding_dim,
        "normalized": config.eval.similarity == "cosine",
        "similarity": config.eval.similarity,
        "preprocessing": bundle.preprocessing.to_dict(),
        "model": config.model.name,
        "method": config.method.name,
    }


def export_model(bundle: ModelBundle, fmt: str, out_dir: str | Path) -> tuple[Path, Path]:
    """Write the model in ``fmt`` (``"torchscript"`` or ``"onnx"``) and its sidecar
    ``model.json`` into ``out_dir``; returns both paths."""
    if fmt not in FORMATS:
        raise ValueError(f"--format: expected one of {sorted(FORMATS)}, got {fmt!r}")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    model = bundle.build()
    example = example_input(bundle)
    path = out / FORMATS[fmt]
    (export_torchscript if fmt == "torchscript" else export_onnx)(model, example, path)
    meta = out / "model.json"
    meta.write_text(json.dumps(sidecar(bundle, fmt, example), indent=2) + "\n")
    return path, meta
