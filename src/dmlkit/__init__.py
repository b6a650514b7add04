"""dmlkit: deep metric learning in one composable framework."""

__version__ = "0.1.0"
