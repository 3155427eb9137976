"""`python -m optimizer.cli`: the `ratchet` command."""
from optimizer.cli import main

main()
