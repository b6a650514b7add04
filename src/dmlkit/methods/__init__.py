"""dmlkit.methods."""
