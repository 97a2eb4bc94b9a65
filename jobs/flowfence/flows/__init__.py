"""The flow-log input contract and the scan: Parquet bound as the DuckDB view `flows`,
the edge aggregation, and the same scan on Spark."""
