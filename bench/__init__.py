"""The benchmark harness behind `make bench`: run by hand, never in CI."""
