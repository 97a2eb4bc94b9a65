"""flowfence benchmarks: `python -m bench.run`; results in bench/RESULTS.md."""
