-- name: bare_distinct
-- The practical limit for `flowfence replay`'s scan: the distinct edge keys of sql/edges.sql
-- over the raw Parquet columns, no measures, no normalisation, no time window.
-- Takes: $files (a glob over the hive tree, e.g. '<root>/**/*.parquet').
-- Returns: one row per distinct raw edge key.
SELECT DISTINCT
    reporter,
    action,
    source_type,
    source_namespace,
    source_name_aggr,
    CASE WHEN source_type = 'net' THEN source_ip END          AS source_ip,
    source_labels,
    dest_type,
    dest_namespace,
    dest_name_aggr,
    CASE WHEN dest_type = 'net' THEN dest_ip END              AS dest_ip,
    dest_labels,
    dest_port,
    proto,
    dest_service_namespace,
    dest_service_name,
    dest_service_port_num,
    dest_domains,
    policies
FROM read_parquet($files, hive_partitioning = true)
