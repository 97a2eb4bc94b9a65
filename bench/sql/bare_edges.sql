-- name: bare_edges
-- The practical limit for `flowfence run`'s scan: the GROUP BY of sql/edges.sql written
-- straight over the raw Parquet columns, with no normalisation (labels and policies stay the
-- raw structs, times stay Unix seconds, '-' stays '-') and no time window.
-- Takes: $files (a glob over the hive tree, e.g. '<root>/**/*.parquet').
-- Returns: one row per distinct raw edge with the same measures as sql/edges.sql.
SELECT
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
    policies,
    min(start_time)                                           AS first_seen,
    max(end_time)                                             AS last_seen,
    CAST(sum(num_flows) AS BIGINT)                            AS flows,
    CAST(sum(bytes_in + bytes_out) AS BIGINT)                 AS bytes,
    CAST(sum(packets_in + packets_out) AS BIGINT)             AS packets,
    CAST(count(DISTINCT start_time // 86400) AS BIGINT)       AS days,
    CAST(count(*) AS BIGINT)                                  AS rows
FROM read_parquet($files, hive_partitioning = true)
GROUP BY
    reporter, action,
    source_type, source_namespace, source_name_aggr,
    CASE WHEN source_type = 'net' THEN source_ip END, source_labels,
    dest_type, dest_namespace, dest_name_aggr,
    CASE WHEN dest_type = 'net' THEN dest_ip END, dest_labels,
    dest_port, proto, dest_service_namespace, dest_service_name, dest_service_port_num,
    dest_domains, policies
