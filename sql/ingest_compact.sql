-- name: ingest_compact
-- Takes: $files, the Parquet files of one date=/hour= partition of an ingest store (all with
-- the ingest schema; paths with glob metacharacters bracketed), and $out, the file to write.
-- Returns: nothing; writes their rows, ordered by start_time, as one zstd Parquet file. The
-- partition directories are not read as columns.
COPY (
    SELECT *
    FROM read_parquet($files, hive_partitioning = false)
    ORDER BY start_time, end_time
) TO $out (FORMAT parquet, COMPRESSION zstd)
