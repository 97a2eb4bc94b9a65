-- name: flows_summary
-- Takes: nothing; reads the view `flows` bound by sources.py (pre-aggregated: `rows` is the
-- number of raw rows behind a view row, so raw rows are counted as sum(rows)).
-- Returns: one row: rows, flows, first start_time, last end_time, distinct namespaces,
-- and the counts per action and reporter that `flowfence run` prints as a summary.
SELECT
    coalesce(sum(rows), 0)::BIGINT                                AS rows,
    coalesce(sum(num_flows), 0)::BIGINT                           AS flows,
    min(start_time)                                               AS first_start,
    max(end_time)                                                 AS last_end,
    count(DISTINCT source_namespace)::BIGINT                      AS source_namespaces,
    count(DISTINCT dest_namespace)::BIGINT                        AS dest_namespaces,
    coalesce(sum(rows) FILTER (WHERE action = 'allow'), 0)::BIGINT AS allowed_rows,
    coalesce(sum(rows) FILTER (WHERE action = 'deny'), 0)::BIGINT  AS denied_rows,
    coalesce(sum(rows) FILTER (WHERE reporter = 'src'), 0)::BIGINT AS src_rows,
    coalesce(sum(rows) FILTER (WHERE reporter = 'dst'), 0)::BIGINT AS dst_rows
FROM flows
