"""The learning state between runs: Parquet tables, incremental reads, the recommendation
lifecycle and traffic rhythm."""
