-- name: state_activity
-- Hourly activity per namespace, the input of rhythm detection (jobs/schedule.py): in which
-- UTC hours a namespace's workloads had flows at all (any action), as the reporting side.
-- Takes: $since, $until, $end_before (TIMESTAMP or NULL), the same row filter as
--   sql/state_edges.sql; reads the view `flows_hourly` (sources.py: the columns below, one
--   row per raw key and UTC hour; on Spark the per-row view under that name).
-- Returns: namespace VARCHAR, hour TIMESTAMP (start of the UTC hour of start_time),
--   flows BIGINT (sum of num_flows), one row per (namespace, hour).
SELECT
    namespace,
    hour,
    CAST(sum(num_flows) AS BIGINT) AS flows
FROM (
    SELECT
        CASE WHEN reporter = 'src' THEN source_namespace ELSE dest_namespace END AS namespace,
        date_trunc('hour', start_time)                                            AS hour,
        num_flows
    FROM flows_hourly
    WHERE ((reporter = 'src' AND source_type = 'wep')
           OR (reporter = 'dst' AND dest_type = 'wep'))
      AND ($since::TIMESTAMP IS NULL OR end_time >= $since::TIMESTAMP)
      AND ($until::TIMESTAMP IS NULL OR start_time < $until::TIMESTAMP)
      AND ($end_before::TIMESTAMP IS NULL OR end_time < $end_before::TIMESTAMP)
)
WHERE namespace IS NOT NULL
GROUP BY namespace, hour
