"""Command modules of the ``deepstyle`` command line that are thin layers over a library call:
each exposes ``add_arguments(parser)`` and ``run(args) -> exit status``. (``paint`` still lives at the
package's top level.)"""
