"""The training loop: AMP, checkpoints with exact resume, logs, callbacks for methods.

``Trainer(config, run_dir).fit()`` runs one experiment into a run folder (see
:mod:`dmlkit.training.trainer`); ``dmlkit train CONFIG`` does the same from the command line.
"""

from dmlkit.training.callbacks import BatchEnd, Callback, CallbackList
from dmlkit.training.checkpoint import (
    CheckpointError,
    convert_legacy,
    load_checkpoint,
    save_checkpoint,
)
from dmlkit.training.interrupt import TrainingInterrupted
from dmlkit.training.rundir import latest_run_dir, new_run_dir
from dmlkit.training.seed import capture_rng_state, restore_rng_state, seed_everything
from dmlkit.training.summary import metrics_table
from dmlkit.training.trainer import Trainer

__all__ = [
    "BatchEnd",
    "Callback",
    "CallbackList",
    "CheckpointError",
    "Trainer",
    "TrainingInterrupted",
    "capture_rng_state",
    "convert_legacy",
    "latest_run_dir",
    "load_checkpoint",
    "metrics_table",
    "new_run_dir",
    "restore_rng_state",
    "save_checkpoint",
    "seed_everything",
]
