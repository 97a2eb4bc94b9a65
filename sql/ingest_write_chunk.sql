-- name: ingest_write_chunk
-- Takes: the Arrow table `ingest_chunk` registered by ingest.py (rows of ingest_rows.COLUMNS,
-- policies as a struct, start_time/end_time Unix seconds); $out (a staging directory) and
-- $pattern (FILENAME_PATTERN, unique per input and chunk).
-- Returns: nothing; writes the rows as hive-partitioned Parquet under $out,
-- date=YYYY-MM-DD/hour=HH/<pattern>.parquet, zstd. The partition values come only from the
-- parsed start_time (UTC), never from strings in the input; they are not written as columns.
COPY (
    SELECT
        *,
        strftime(make_timestamp(start_time * 1000000), '%Y-%m-%d') AS date,
        strftime(make_timestamp(start_time * 1000000), '%H')       AS hour
    FROM ingest_chunk
) TO $out (
    FORMAT parquet,
    PARTITION_BY (date, hour),
    COMPRESSION zstd,
    ROW_GROUP_SIZE 16384,
    FILENAME_PATTERN $pattern,
    OVERWRITE_OR_IGNORE
)
