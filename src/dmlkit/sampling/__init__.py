"""dmlkit.sampling."""
