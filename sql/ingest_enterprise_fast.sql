-- name: ingest_enterprise_fast
-- Not one query: the fragments jobs/ingest_fast.py assembles into the DuckDB fast path of
-- `flowfence ingest` for Calico Enterprise flow-log files (every line a flow object as Felix
-- writes it). Each input column is read as JSON and checked here; `{col}` stands for the
-- quoted name of an input column and `{json}` for a JSON expression built from it, both from
-- the fixed column list in ingest_fast.py (never a value, never a path).
-- The fast path accepts a strict subset of what the line-by-line parser
-- (ingest_enterprise.py) accepts, and yields the same values for it: anything else calls
-- error(), the COPY fails, and the file is parsed line by line instead, which reports
-- malformed lines with their numbers.
-- Takes (section `copy`): $file (a literal path), $columns (name -> 'JSON'), $compression
-- ('none' or 'gzip'), $out (staging directory), $pattern (FILENAME_PATTERN).
-- Returns: nothing; writes the rows as ingest_write_chunk.sql does.

-- section: text
-- a string of at most 4096 characters, or null
CASE
    WHEN {col} IS NULL OR json_type({col}) = 'NULL' THEN NULL
    WHEN json_type({col}) = 'VARCHAR' AND length({col} ->> '$') <= 4096 THEN {col} ->> '$'
    ELSE error('fast path: {col} is not a short string')
END

-- section: required_text
CASE
    WHEN json_type({col}) = 'VARCHAR' AND length({col} ->> '$') <= 4096 THEN {col} ->> '$'
    ELSE error('fast path: {col} missing or not a short string')
END

-- section: integer
-- a JSON integer that fits BIGINT, or null
CASE
    WHEN {col} IS NULL OR json_type({col}) = 'NULL' THEN NULL
    WHEN json_type({col}) IN ('BIGINT', 'UBIGINT') THEN CAST({col} AS BIGINT)
    ELSE error('fast path: {col} is not an integer')
END

-- section: epoch
-- required Unix seconds between 2000-01-01 and 2200-01-01 (ingest_rows.MIN_EPOCH/MAX_EPOCH)
CASE
    WHEN json_type({col}) IN ('BIGINT', 'UBIGINT')
        AND CAST({col} AS BIGINT) BETWEEN 946684800 AND 7258118399
        THEN CAST({col} AS BIGINT)
    ELSE error('fast path: {col} missing or not Unix seconds')
END

-- section: proto
-- a short string, or an integer protocol number kept as its decimal text
CASE
    WHEN {col} IS NULL OR json_type({col}) = 'NULL' THEN NULL
    WHEN json_type({col}) IN ('BIGINT', 'UBIGINT') THEN {col} ->> '$'
    WHEN json_type({col}) = 'VARCHAR' AND length({col} ->> '$') <= 4096 THEN {col} ->> '$'
    ELSE error('fast path: {col} is not a protocol')
END

-- section: string_list
-- {json}: null, or an array of strings of at most 4096 characters each (one extraction of the
-- array: each element is checked as it is converted)
CASE
    WHEN {json} IS NULL OR json_type({json}) = 'NULL' THEN NULL
    WHEN json_type({json}) = 'ARRAY' THEN list_transform(
        CAST({json} AS JSON[]),
        lambda x: CASE
            WHEN json_type(x) = 'VARCHAR' AND length(x ->> '$') <= 4096 THEN x ->> '$'
            ELSE error('fast path: {col} is not a list of strings')
        END
    )
    ELSE error('fast path: {col} is not a list of strings')
END

-- section: labels_object
-- true for null or an object whose only key is `labels` (Calico's {labels: [...]})
({col} IS NULL OR json_type({col}) = 'NULL'
    OR (json_type({col}) = 'OBJECT' AND json_keys({col}) = ['labels']))

-- section: policies_object
-- true for null or an object (the four hit lists are checked one by one)
({col} IS NULL OR json_type({col}) IN ('NULL', 'OBJECT'))

-- section: copy
-- {projection}: the select list; {checks}: conditions that call error() when a line is not
-- fast-path material (they never filter a row out).
COPY (
    SELECT
        *,
        strftime(make_timestamp(start_time * 1000000), '%Y-%m-%d') AS date,
        strftime(make_timestamp(start_time * 1000000), '%H')       AS hour
    FROM (
        SELECT {projection}
        FROM read_json(
            $file,
            format = 'newline_delimited',
            columns = $columns,
            compression = $compression
        )
        WHERE {checks}
    )
) TO $out (
    FORMAT parquet,
    PARTITION_BY (date, hour),
    COMPRESSION zstd,
    ROW_GROUP_SIZE 16384,
    FILENAME_PATTERN $pattern,
    OVERWRITE_OR_IGNORE
)
