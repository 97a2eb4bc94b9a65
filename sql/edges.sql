-- name: edges
-- The edge aggregation: the one scan of the flow logs that every later stage works from.
-- Takes: $since, $until (TIMESTAMP, UTC, either may be NULL for an open end); reads the view
--   `flows`. sources.py binds it pre-aggregated (one row per raw key and UTC hour, `rows` raw
--   rows behind each) with the window already applied to the raw rows, so for DuckDB this
--   filter only repeats the binding's window; it does the filtering for the per-row Spark view.
-- Returns: one row per distinct edge (EDGE_SCHEMA in jobs/edges.py): the endpoint, port,
--   protocol, service, domain and policy-trace columns that identify it, with first_seen,
--   last_seen, flows, bytes, packets, days (distinct UTC days) and rows (raw rows).
-- IPs are kept only for `net` endpoints (public/private peers need them for CIDRs); for pods
-- and network sets they would only multiply the edges.
-- GROUP BY columns are spelled out (not GROUP BY ALL) so the Spark translation can run it.
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
    CAST(sum(rows) AS BIGINT)                                 AS rows
FROM flows
WHERE ($since::TIMESTAMP IS NULL OR end_time >= $since::TIMESTAMP)
  AND ($until::TIMESTAMP IS NULL OR start_time < $until::TIMESTAMP)
GROUP BY
    reporter, action,
    source_type, source_namespace, source_name_aggr,
    CASE WHEN source_type = 'net' THEN source_ip END, source_labels,
    dest_type, dest_namespace, dest_name_aggr,
    CASE WHEN dest_type = 'net' THEN dest_ip END, dest_labels,
    dest_port, proto, dest_service_namespace, dest_service_name, dest_service_port_num,
    dest_domains, enforced_policies, pending_policies
