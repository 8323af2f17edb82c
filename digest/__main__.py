"""``python -m digest``: the command line."""

from digest.cli import main

main()
