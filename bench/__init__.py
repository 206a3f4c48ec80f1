"""`make bench`: the platform measured against bare baselines (see docs/bench.md)."""
