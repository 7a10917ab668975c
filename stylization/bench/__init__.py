"""Speed side by side with the official implementations (scripts/bench_official.py)."""
