"""`python -m carteco.cli`, as the `carteco` console script."""

from carteco.cli import main

main()
