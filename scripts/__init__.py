"""Programs for developers: `make run` (run_local) and the setup scripts beside it."""
