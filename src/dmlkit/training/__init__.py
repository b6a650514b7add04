"""dmlkit.training."""
