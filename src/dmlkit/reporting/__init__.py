"""The report of a finished run (:func:`build_report`): reading a run folder (``run``), retrieval
and the 2-D map (``neighbours``), the figures (``figures``), label fonts (``fonts``), the HTML page
(``page``) and their assembly (``build``)."""

from dmlkit.reporting.build import build_report

__all__ = ["build_report"]
