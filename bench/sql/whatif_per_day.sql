-- name: whatif_per_day
-- What-if for sql/state_edges.sql, same input and output: count(DISTINCT day) and
-- list(DISTINCT day) are replaced by a pre-aggregation per (edge, UTC day), so DuckDB runs two
-- plain hash aggregations instead of materialising every normalised row in a CTE for a
-- second, distinct aggregation.
-- Takes: $since, $until, $end_before (TIMESTAMP or NULL) like sql/state_edges.sql; reads the
--   `flows` view (pre-aggregated: raw rows are sum(rows)).
-- Returns: EDGE_SCHEMA rows plus day_list, as sql/state_edges.sql.
WITH per_day AS (
  SELECT reporter, action, source_type, source_namespace, source_name_aggr,
    CASE WHEN source_type = 'net' THEN source_ip END AS source_ip, source_labels,
    dest_type, dest_namespace, dest_name_aggr,
    CASE WHEN dest_type = 'net' THEN dest_ip END AS dest_ip, dest_labels,
    dest_port, proto, dest_service_namespace, dest_service_name, dest_service_port_num,
    dest_domains, enforced_policies, pending_policies,
    CAST(start_time AS DATE) AS day,
    min(start_time) AS first_seen, max(end_time) AS last_seen,
    sum(num_flows) AS flows, sum(bytes_in + bytes_out) AS bytes, sum(packets_in + packets_out) AS packets,
    sum(rows) AS rows
  FROM flows
  WHERE ($since::TIMESTAMP IS NULL OR end_time >= $since::TIMESTAMP)
    AND ($until::TIMESTAMP IS NULL OR start_time < $until::TIMESTAMP)
    AND ($end_before::TIMESTAMP IS NULL OR end_time < $end_before::TIMESTAMP)
  GROUP BY
    reporter, action, source_type, source_namespace, source_name_aggr,
    CASE WHEN source_type = 'net' THEN source_ip END, source_labels,
    dest_type, dest_namespace, dest_name_aggr,
    CASE WHEN dest_type = 'net' THEN dest_ip END, dest_labels,
    dest_port, proto, dest_service_namespace, dest_service_name, dest_service_port_num,
    dest_domains, enforced_policies, pending_policies, CAST(start_time AS DATE)
)
SELECT reporter, action, source_type, source_namespace, source_name_aggr, source_ip, source_labels,
  dest_type, dest_namespace, dest_name_aggr, dest_ip, dest_labels, dest_port, proto,
  dest_service_namespace, dest_service_name, dest_service_port_num, dest_domains,
  enforced_policies, pending_policies,
  min(first_seen) AS first_seen, max(last_seen) AS last_seen,
  CAST(sum(flows) AS BIGINT) AS flows, CAST(sum(bytes) AS BIGINT) AS bytes,
  CAST(sum(packets) AS BIGINT) AS packets, CAST(count(*) AS BIGINT) AS days,
  CAST(sum(rows) AS BIGINT) AS rows,
  list_sort(list(day)) AS day_list
FROM per_day
GROUP BY reporter, action, source_type, source_namespace, source_name_aggr, source_ip, source_labels,
  dest_type, dest_namespace, dest_name_aggr, dest_ip, dest_labels, dest_port, proto,
  dest_service_namespace, dest_service_name, dest_service_port_num, dest_domains,
  enforced_policies, pending_policies
