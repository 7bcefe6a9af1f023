"""`python -m eggpool` runs the command-line interface."""

from eggpool.cli import main

main()
