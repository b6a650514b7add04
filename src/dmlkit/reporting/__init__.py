"""The parts of :func:`dmlkit.report.build_report`: reading a run folder (``run``), retrieval and
the 2-D map (``neighbours``), the figures (``figures``) and the HTML page (``page``)."""
