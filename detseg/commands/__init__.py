"""detseg's command-line programs.

Each module is one command with a ``main(argv=None) -> int``: the ``detseg-<name>``
console script (``pyproject.toml``) and the ``tools/<name>.py`` shim both call it, so the
two print the same output, the same ``error:`` lines and exit with the same codes.
``tools/convert.py`` is not here yet; it keeps its own ``main``.
"""
