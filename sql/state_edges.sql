-- name: state_edges
-- The edge aggregation: the one scan every later stage works from (incremental runs in
-- jobs/incremental.py, `edges.aggregate` for replay and notebooks, the Spark engine through
-- sqlglot). Besides the distinct-day count it lists the distinct UTC days each edge was seen
-- on, so that evidence from separate reads can be merged exactly (a count cannot be merged).
-- Takes: $since, $until (TIMESTAMP, UTC, either may be NULL for an open end): rows with
--   end_time >= $since and start_time < $until; $end_before (TIMESTAMP or NULL): only rows
--   with end_time < $end_before (a backfill reads the rows a previous read left out). Reads the
--   view `flows` bound by sources.py (`bind_files`), pre-aggregated per raw key and UTC day
--   with this window already applied to the raw rows: the filter here only repeats it, and
--   `rows` counts the raw rows behind each view row.
-- Returns: one row per distinct edge, the EDGE_SCHEMA columns (jobs/edges.py) and `day_list`
--   (DATE[], sorted).
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
    enforced_policies,
    pending_policies,
    min(start_time)                                           AS first_seen,
    max(end_time)                                             AS last_seen,
    CAST(sum(num_flows) AS BIGINT)                            AS flows,
    CAST(sum(bytes_in + bytes_out) AS BIGINT)                 AS bytes,
    CAST(sum(packets_in + packets_out) AS BIGINT)             AS packets,
    CAST(count(DISTINCT CAST(start_time AS DATE)) AS BIGINT)  AS days,
    CAST(sum(rows) AS BIGINT)                                 AS rows,
    list_sort(list(DISTINCT CAST(start_time AS DATE)))        AS day_list
FROM flows
WHERE ($since::TIMESTAMP IS NULL OR end_time >= $since::TIMESTAMP)
  AND ($until::TIMESTAMP IS NULL OR start_time < $until::TIMESTAMP)
  AND ($end_before::TIMESTAMP IS NULL OR end_time < $end_before::TIMESTAMP)
GROUP BY
    reporter, action,
    source_type, source_namespace, source_name_aggr,
    CASE WHEN source_type = 'net' THEN source_ip END, source_labels,
    dest_type, dest_namespace, dest_name_aggr,
    CASE WHEN dest_type = 'net' THEN dest_ip END, dest_labels,
    dest_port, proto, dest_service_namespace, dest_service_name, dest_service_port_num,
    dest_domains, enforced_policies, pending_policies
