"""dmlkit.models."""
