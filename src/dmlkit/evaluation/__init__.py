"""dmlkit.evaluation."""
