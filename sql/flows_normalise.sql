-- name: flows_normalise
-- Not one query: the fixed expression fragments that jobs/encodings.py assembles into the
-- projection behind the `flows` view (see ARCHITECTURE.md, "The `flows` view").
-- Takes: nothing bound. Each section below is one SQL expression; `{col}` stands for the quoted
-- name of an input column from the fixed contract in encodings.py (never a value, never a
-- path). The section used for a column is chosen from the Parquet type DuckDB reports for it.
-- Returns: each fragment yields exactly the normalised type listed in its comment.
-- "None" markers: Calico writes `-` (and some exporters '') where a value does not apply;
-- both become NULL for scalars and are dropped from lists.

-- section: time_timestamp
-- TIMESTAMP, TIMESTAMP_S/_MS/_NS (naive, already UTC) -> TIMESTAMP
CAST({col} AS TIMESTAMP)

-- section: time_timestamptz
-- TIMESTAMPTZ -> TIMESTAMP in UTC; via epoch_us so the session TimeZone cannot shift it
make_timestamp(epoch_us({col}))

-- section: time_epoch_int
-- integer Unix seconds -> TIMESTAMP
make_timestamp(CAST({col} AS BIGINT) * 1000000)

-- section: time_epoch_float
-- float or decimal Unix seconds -> TIMESTAMP (microsecond precision)
make_timestamp(CAST(round(CAST({col} AS DOUBLE) * 1000000) AS BIGINT))

-- section: text
-- VARCHAR -> VARCHAR, '-' and '' -> NULL
CASE WHEN {col} IN ('-', '') THEN NULL ELSE {col} END

-- section: text_lower
-- VARCHAR -> lower-case VARCHAR, '-' and '' -> NULL (types, action, reporter)
CASE WHEN {col} IN ('-', '') THEN NULL ELSE lower({col}) END

-- section: proto_text
-- VARCHAR protocol name or number-as-text -> lower-case name, unknown kept lower-cased
CASE
    WHEN {col} IN ('-', '') THEN NULL
    ELSE CASE lower(trim({col}))
        WHEN '6' THEN 'tcp'
        WHEN '17' THEN 'udp'
        WHEN '1' THEN 'icmp'
        WHEN '58' THEN 'icmpv6'
        WHEN 'icmp6' THEN 'icmpv6'
        WHEN 'ipv6-icmp' THEN 'icmpv6'
        WHEN '132' THEN 'sctp'
        WHEN '136' THEN 'udplite'
        ELSE lower(trim({col}))
    END
END

-- section: proto_number
-- integer IANA protocol number -> name, unknown numbers as their decimal text
CASE TRY_CAST({col} AS BIGINT)
    WHEN 6 THEN 'tcp'
    WHEN 17 THEN 'udp'
    WHEN 1 THEN 'icmp'
    WHEN 58 THEN 'icmpv6'
    WHEN 132 THEN 'sctp'
    WHEN 136 THEN 'udplite'
    ELSE CAST(TRY_CAST({col} AS BIGINT) AS VARCHAR)
END

-- section: integer
-- any number -> INTEGER; out of range becomes NULL rather than failing the whole scan
TRY_CAST({col} AS INTEGER)

-- section: port
-- any number -> INTEGER destination port; 0 (what Calico writes when the flow has no port, as
-- for ICMP, or older releases for an unknown one) becomes NULL, "no port": never a rule for
-- port 0. A number beyond INTEGER becomes NULL too; one beyond 65535 is refused by the edge
-- checks (calico/names.py).
NULLIF(TRY_CAST({col} AS INTEGER), 0)

-- section: count_zero
-- any number -> BIGINT counter, NULL -> 0
coalesce(TRY_CAST({col} AS BIGINT), 0)

-- section: count_one
-- any number -> BIGINT num_flows, NULL -> 1 (a row stands for at least one flow)
coalesce(TRY_CAST({col} AS BIGINT), 1)

-- section: labels_list
-- list<string> of k=v -> sorted VARCHAR[], [] when none. Not de-duplicated: Calico builds the
-- list from a label map, so keys are unique, and list_distinct would triple the cost per row.
coalesce(
    list_sort(list_filter({col}, lambda x: x NOT IN ('-', ''))),
    CAST([] AS VARCHAR[])
)

-- section: labels_struct
-- struct {labels: list<string>} (Calico Enterprise JSON shape) -> as labels_list
coalesce(
    list_sort(list_filter({col}.labels, lambda x: x NOT IN ('-', ''))),
    CAST([] AS VARCHAR[])
)

-- section: labels_map
-- map<string,string> -> sorted 'k=v' VARCHAR[] (map keys are unique), [] when none
coalesce(
    list_sort(list_transform(
        map_entries({col}),
        lambda e: e.key || '=' || coalesce(e.value, '')
    )),
    CAST([] AS VARCHAR[])
)

-- section: domains_list
-- list<string> -> trimmed lower-case, sorted distinct VARCHAR[], [] when none
coalesce(
    list_sort(list_distinct(list_filter(
        list_transform({col}, lambda x: lower(trim(x))),
        lambda x: x NOT IN ('-', '')
    ))),
    CAST([] AS VARCHAR[])
)

-- section: domains_text
-- comma-separated VARCHAR -> as domains_list
coalesce(
    list_sort(list_distinct(list_filter(
        list_transform(string_split({col}, ','), lambda x: lower(trim(x))),
        lambda x: x NOT IN ('-', '')
    ))),
    CAST([] AS VARCHAR[])
)

-- section: hits_list
-- list<string> of policy-hit strings -> VARCHAR[] in trace order, none markers dropped
coalesce(list_filter({col}, lambda x: x NOT IN ('-', '')), CAST([] AS VARCHAR[]))

-- section: hits_enforced
-- struct policies: enforced_policies
coalesce(list_filter({col}.enforced_policies, lambda x: x NOT IN ('-', '')), CAST([] AS VARCHAR[]))

-- section: hits_enforced_or_all
-- struct policies with both: enforced_policies, all_policies where a row lacks them
coalesce(
    list_filter(
        coalesce({col}.enforced_policies, {col}.all_policies),
        lambda x: x NOT IN ('-', '')
    ),
    CAST([] AS VARCHAR[])
)

-- section: hits_all
-- struct policies without enforced_policies: all_policies stands in for enforced
coalesce(list_filter({col}.all_policies, lambda x: x NOT IN ('-', '')), CAST([] AS VARCHAR[]))

-- section: hits_pending
-- struct policies: pending_policies
coalesce(list_filter({col}.pending_policies, lambda x: x NOT IN ('-', '')), CAST([] AS VARCHAR[]))

-- section: absent_text
CAST(NULL AS VARCHAR)

-- section: absent_integer
CAST(NULL AS INTEGER)

-- section: absent_list
CAST([] AS VARCHAR[])

-- section: absent_zero
CAST(0 AS BIGINT)

-- section: absent_one
CAST(1 AS BIGINT)

-- section: one_row
-- rows, in a per-row view (the Spark engine): each row stands for one raw row
CAST(1 AS BIGINT)

-- The pre-aggregation behind the DuckDB views (encodings.grouping): raw rows are grouped on
-- their raw key columns and the UTC day of start_time first (the view `flows`), and the
-- fragments above are applied to the groups, not to every row. Exact, because each fragment is
-- a function of the raw values of one group. The hourly activity (sql/state_activity.sql)
-- reads its own view `flows_hourly`: a few columns grouped per UTC hour.

-- section: row_day
-- the group's UTC day; {col} is the start_time fragment. The day so that the distinct UTC days
-- of an edge (sql/state_edges.sql) are exact over the view.
date_trunc('day', {col})

-- section: row_hour
-- the group's UTC hour, for `flows_hourly`: per-hour activity is exact over it.
date_trunc('hour', {col})

-- section: row_net_ip
-- an IP kept only for `net` endpoints, before grouping: pod and host IPs would multiply the
-- groups, and only sql/edges.sql reads IPs, for `net` endpoints. {type} is the endpoint type
-- fragment (lower-cased), {col} the raw IP column.
CASE WHEN {type} = 'net' THEN {col} END

-- section: row_hash
-- a nested key column (labels, domains, policies) as its 64-bit hash, for grouping
-- (flows/pregroup.py): a wide nested key makes every hash-table row wide and every comparison
-- slow, and past DuckDB's memory limit the whole pre-aggregation spills. The value is joined
-- back per group from a lookup of each hash to its value, checked to hold one value per hash.
hash({col})

-- section: hash_found
-- the filter after that join; {col} is the lookup's marker column, TRUE on its rows. A group
-- whose hash found no value stops the query instead of reading its value as null.
CASE WHEN {col} IS NULL THEN error('flows: a grouping hash has no value in its lookup') ELSE TRUE END

-- section: group_first
min({col})

-- section: group_last
max({col})

-- section: group_sum
CAST(sum({col}) AS BIGINT)

-- section: group_rows
CAST(count(*) AS BIGINT)

-- section: empty
-- the whole view with no rows (no file left after time pruning): same columns and types
SELECT
    CAST(NULL AS TIMESTAMP) AS start_time,
    CAST(NULL AS TIMESTAMP) AS end_time,
    CAST(NULL AS VARCHAR) AS source_type,
    CAST(NULL AS VARCHAR) AS source_namespace,
    CAST(NULL AS VARCHAR) AS source_name_aggr,
    CAST(NULL AS VARCHAR) AS dest_type,
    CAST(NULL AS VARCHAR) AS dest_namespace,
    CAST(NULL AS VARCHAR) AS dest_name_aggr,
    CAST(NULL AS INTEGER) AS dest_port,
    CAST(NULL AS VARCHAR) AS proto,
    CAST(NULL AS VARCHAR) AS action,
    CAST(NULL AS VARCHAR) AS reporter,
    CAST(NULL AS VARCHAR) AS source_ip,
    CAST(NULL AS VARCHAR) AS dest_ip,
    CAST(NULL AS VARCHAR[]) AS source_labels,
    CAST(NULL AS VARCHAR[]) AS dest_labels,
    CAST(NULL AS VARCHAR) AS dest_service_namespace,
    CAST(NULL AS VARCHAR) AS dest_service_name,
    CAST(NULL AS VARCHAR) AS dest_service_port,
    CAST(NULL AS INTEGER) AS dest_service_port_num,
    CAST(NULL AS VARCHAR[]) AS dest_domains,
    CAST(NULL AS VARCHAR[]) AS enforced_policies,
    CAST(NULL AS VARCHAR[]) AS pending_policies,
    CAST(NULL AS BIGINT) AS num_flows,
    CAST(NULL AS BIGINT) AS num_flows_started,
    CAST(NULL AS BIGINT) AS num_flows_completed,
    CAST(NULL AS BIGINT) AS bytes_in,
    CAST(NULL AS BIGINT) AS bytes_out,
    CAST(NULL AS BIGINT) AS packets_in,
    CAST(NULL AS BIGINT) AS packets_out,
    CAST(NULL AS VARCHAR) AS host,
    CAST(NULL AS BIGINT) AS rows
WHERE false
