"""``python -m digest.cli``: the command line."""

from digest.cli import main

main()
