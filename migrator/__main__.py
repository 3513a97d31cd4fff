"""`python -m migrator`: the same program as `kata-migrate`."""

from migrator.cli import main

main()
