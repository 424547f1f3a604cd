"""One module per ``au-lib`` subcommand (see :mod:`au_lib.cli`)."""
