"""dmlkit.data."""
