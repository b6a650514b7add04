"""The implementations of the ``dmlkit`` subcommands, one module each with ``run(args) -> int``.

:mod:`dmlkit.cli` holds the parser and imports a command's module only when that command runs, so
that ``--help`` and argument errors never pay for torch.
"""
