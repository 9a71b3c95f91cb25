"""`python -m fastinfer` is the `fastinfer` command."""

from fastinfer.cli import main

main()
