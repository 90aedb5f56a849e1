"""``python -m poolwarden`` runs the CLI."""

from poolwarden.cli import main

main()
