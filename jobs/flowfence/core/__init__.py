"""Foundations every stage shares: errors and exit codes, atomic files, locks, times and
durations, the SQL loader, the DuckDB connection, object-store locations."""
