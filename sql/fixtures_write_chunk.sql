-- name: fixtures_write_chunk
-- Takes: the Arrow table `fixture_chunk` registered by fixtures_gen.py (one hour of generated
-- rows, template columns dictionary-encoded, lists as VARCHAR[]); $out (dataset root),
-- $pattern (FILENAME_PATTERN, unique per chunk within its hour), $date ('YYYY-MM-DD') and
-- $hour ('HH') of the chunk.
-- Returns: nothing; writes raw Calico-shaped flow-log rows as hive-partitioned Parquet
-- date=YYYY-MM-DD/hour=HH/<pattern>.parquet (labels and policies wrapped in the structs that
-- Calico's JSON has), keeping the files of earlier chunks.
COPY (
    SELECT
        start_time,
        end_time,
        source_type,
        source_namespace,
        source_name_aggr,
        source_ip,
        {'labels': source_labels}                          AS source_labels,
        dest_type,
        dest_namespace,
        dest_name_aggr,
        dest_ip,
        {'labels': dest_labels}                            AS dest_labels,
        dest_port,
        proto,
        action,
        reporter,
        dest_service_namespace,
        dest_service_name,
        dest_service_port,
        dest_service_port_num,
        dest_domains,
        {'enforced_policies': enforced_policies,
         'pending_policies': pending_policies}             AS policies,
        num_flows,
        num_flows_started,
        num_flows_completed,
        bytes_in,
        bytes_out,
        packets_in,
        packets_out,
        host,
        source_port,
        $date::VARCHAR                                     AS date,
        $hour::VARCHAR                                     AS hour
    FROM fixture_chunk
) TO $out (
    FORMAT parquet,
    PARTITION_BY (date, hour),
    COMPRESSION zstd,
    FILENAME_PATTERN $pattern,
    OVERWRITE_OR_IGNORE
)
