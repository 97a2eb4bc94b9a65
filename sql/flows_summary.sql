-- name: flows_summary
-- Takes: nothing; reads the view `flows` bound by sources.py.
-- Returns: one row: rows, flows, first start_time, last end_time, distinct namespaces,
-- and the counts per action and reporter that `flowfence run` prints as a summary.
SELECT
    count(*)::BIGINT                                      AS rows,
    coalesce(sum(num_flows), 0)::BIGINT                   AS flows,
    min(start_time)                                       AS first_start,
    max(end_time)                                         AS last_end,
    count(DISTINCT source_namespace)::BIGINT              AS source_namespaces,
    count(DISTINCT dest_namespace)::BIGINT                AS dest_namespaces,
    count(*) FILTER (WHERE action = 'allow')::BIGINT      AS allowed_rows,
    count(*) FILTER (WHERE action = 'deny')::BIGINT       AS denied_rows,
    count(*) FILTER (WHERE reporter = 'src')::BIGINT      AS src_rows,
    count(*) FILTER (WHERE reporter = 'dst')::BIGINT      AS dst_rows
FROM flows
