-- name: whatif_group_first
-- What-if for `bind_flows` + sql/edges.sql: group the raw rows first (cheap scalar clean-up
-- only, lists and structs left raw, plus the UTC day), then normalise the list columns once
-- per group (a few thousand rows, not millions) and group again. Exact because every
-- normalisation is a function of the raw key values; min/max/sum/count re-aggregate and the
-- day key makes the distinct-day count exact.
-- Written for the encodings the fixture generator uses (Unix-second times, labels and policies
-- in structs), so it is a measurement of the approach, not a general implementation.
-- Takes: $files (a glob), $lo and $hi (Unix seconds, the window [lo, hi)).
-- Returns: EDGE_SCHEMA rows plus day_list, as sql/state_edges.sql.
WITH raw AS (
  SELECT
    CASE WHEN reporter IN ('-', '') THEN NULL ELSE lower(reporter) END AS reporter,
    CASE WHEN action IN ('-', '') THEN NULL ELSE lower(action) END AS action,
    CASE WHEN source_type IN ('-', '') THEN NULL ELSE lower(source_type) END AS source_type,
    source_namespace, source_name_aggr,
    CASE WHEN source_type = 'net' THEN source_ip END AS source_ip,
    source_labels,
    CASE WHEN dest_type IN ('-', '') THEN NULL ELSE lower(dest_type) END AS dest_type,
    dest_namespace, dest_name_aggr,
    CASE WHEN dest_type = 'net' THEN dest_ip END AS dest_ip,
    dest_labels, dest_port, proto, dest_service_namespace, dest_service_name, dest_service_port_num,
    dest_domains, policies,
    start_time // 86400 AS day,
    min(start_time) AS first_seen, max(end_time) AS last_seen,
    sum(coalesce(num_flows,1)) AS flows, sum(coalesce(bytes_in,0) + coalesce(bytes_out,0)) AS bytes,
    sum(coalesce(packets_in,0) + coalesce(packets_out,0)) AS packets, count(*) AS rows
  FROM read_parquet($files, hive_partitioning = true)
  WHERE end_time >= $lo AND start_time < $hi
  GROUP BY ALL
), norm AS (
  SELECT
    reporter, action, source_type,
    CASE WHEN source_namespace IN ('-', '') THEN NULL ELSE source_namespace END AS source_namespace,
    CASE WHEN source_name_aggr IN ('-', '') THEN NULL ELSE source_name_aggr END AS source_name_aggr,
    CASE WHEN source_ip IN ('-', '') THEN NULL ELSE source_ip END AS source_ip,
    coalesce(list_sort(list_filter(source_labels.labels, lambda x: x NOT IN ('-', ''))), CAST([] AS VARCHAR[])) AS source_labels,
    dest_type,
    CASE WHEN dest_namespace IN ('-', '') THEN NULL ELSE dest_namespace END AS dest_namespace,
    CASE WHEN dest_name_aggr IN ('-', '') THEN NULL ELSE dest_name_aggr END AS dest_name_aggr,
    CASE WHEN dest_ip IN ('-', '') THEN NULL ELSE dest_ip END AS dest_ip,
    coalesce(list_sort(list_filter(dest_labels.labels, lambda x: x NOT IN ('-', ''))), CAST([] AS VARCHAR[])) AS dest_labels,
    dest_port, lower(proto) AS proto,
    CASE WHEN dest_service_namespace IN ('-', '') THEN NULL ELSE dest_service_namespace END AS dest_service_namespace,
    CASE WHEN dest_service_name IN ('-', '') THEN NULL ELSE dest_service_name END AS dest_service_name,
    dest_service_port_num,
    coalesce(list_sort(list_distinct(list_filter(list_transform(dest_domains, lambda x: lower(trim(x))), lambda x: x NOT IN ('-', '')))), CAST([] AS VARCHAR[])) AS dest_domains,
    coalesce(list_filter(policies.enforced_policies, lambda x: x NOT IN ('-', '')), CAST([] AS VARCHAR[])) AS enforced_policies,
    coalesce(list_filter(policies.pending_policies, lambda x: x NOT IN ('-', '')), CAST([] AS VARCHAR[])) AS pending_policies,
    day, first_seen, last_seen, flows, bytes, packets, rows
  FROM raw
)
SELECT reporter, action, source_type, source_namespace, source_name_aggr, source_ip, source_labels,
  dest_type, dest_namespace, dest_name_aggr, dest_ip, dest_labels, dest_port, proto,
  dest_service_namespace, dest_service_name, dest_service_port_num, dest_domains, enforced_policies, pending_policies,
  make_timestamp(min(first_seen) * 1000000) AS first_seen, make_timestamp(max(last_seen) * 1000000) AS last_seen,
  CAST(sum(flows) AS BIGINT) AS flows, CAST(sum(bytes) AS BIGINT) AS bytes, CAST(sum(packets) AS BIGINT) AS packets,
  CAST(count(DISTINCT day) AS BIGINT) AS days, CAST(sum(rows) AS BIGINT) AS rows,
  list_sort(list(DISTINCT DATE '1970-01-01' + CAST(day AS INTEGER))) AS day_list
FROM norm
GROUP BY ALL
