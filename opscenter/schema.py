"""The Ops tables, created on start (IF NOT EXISTS). `{ID}`/`{REAL}` are filled per dialect by opscenter.db; a
statement given as {dialect: sql} runs on that dialect only.

Times are UNIX seconds (float) from the app's clock; JSON documents are stored as text on both backends.
"""

# The columns of `logs` after its id, alike on both dialects (only the id and partitioning differ).
_LOG_COLUMNS = """
        pipeline_name TEXT NOT NULL,
        edge_id TEXT NOT NULL,
        partition TEXT NOT NULL,
        seq BIGINT NOT NULL,
        time BIGINT,
        record TEXT NOT NULL,
        received_at {REAL} NOT NULL"""

STATEMENTS = (
    """CREATE TABLE IF NOT EXISTS workspaces (
        id {ID},
        name TEXT NOT NULL UNIQUE)""",
    # `record` is the packager's publish record as received (JSON), without id/status/times.
    """CREATE TABLE IF NOT EXISTS publishes (
        id {ID},
        pipeline_name TEXT NOT NULL,
        pipeline_version TEXT NOT NULL,
        pipeline_url TEXT NOT NULL,
        workspace_id BIGINT REFERENCES workspaces(id),
        record TEXT NOT NULL,
        replaces TEXT NOT NULL,
        status TEXT NOT NULL,
        created_at {REAL} NOT NULL,
        updated_at {REAL} NOT NULL)""",
    "CREATE INDEX IF NOT EXISTS publishes_by_pipeline ON publishes (pipeline_name, id)",
    # Pipelines, their versions and models under integer ids (seed 003's pipeline_id, pipeline_version_id,
    # model_config_ids), registered by the packager's publish. `source` is the latest record the packager sent
    # for that version: where its artifact, chart and engine image are in the build registry.
    """CREATE TABLE IF NOT EXISTS pipelines (
        id {ID},
        name TEXT NOT NULL UNIQUE,
        workspace_id BIGINT REFERENCES workspaces(id),
        created_at {REAL} NOT NULL,
        updated_at {REAL} NOT NULL)""",
    """CREATE TABLE IF NOT EXISTS pipeline_versions (
        id {ID},
        pipeline_id BIGINT NOT NULL REFERENCES pipelines(id),
        name TEXT NOT NULL,
        source TEXT NOT NULL,
        created_at {REAL} NOT NULL,
        updated_at {REAL} NOT NULL,
        UNIQUE (pipeline_id, name))""",
    """CREATE TABLE IF NOT EXISTS model_configs (
        id {ID},
        pipeline_version_id BIGINT NOT NULL REFERENCES pipeline_versions(id),
        model_name TEXT NOT NULL,
        model_version TEXT,
        sha256 TEXT,
        created_at {REAL} NOT NULL,
        UNIQUE (pipeline_version_id, model_name))""",
    # A publish Ops makes itself (seed 003's id body): the copy into the edge registry, done by a worker that
    # claims the row (claimed_by, claimed_at: a lease it renews while copying). A claim older than the lease
    # belongs to a worker that died, and any worker, of this process or another replica, takes it over.
    # not_before delays a retry after a transient failure; `error` is the last failure.
    """CREATE TABLE IF NOT EXISTS publish_jobs (
        publish_id BIGINT PRIMARY KEY REFERENCES publishes(id),
        pipeline_version_id BIGINT NOT NULL REFERENCES pipeline_versions(id),
        model_config_ids TEXT NOT NULL,
        attempts BIGINT NOT NULL,
        claimed_by TEXT,
        claimed_at {REAL},
        not_before {REAL} NOT NULL,
        done_at {REAL},
        error TEXT)""",
    "CREATE INDEX IF NOT EXISTS publish_jobs_open ON publish_jobs (done_at, not_before)",
    # One row per edge location; the join token is kept only as its digest and burned by setting used_at.
    """CREATE TABLE IF NOT EXISTS edges (
        id TEXT PRIMARY KEY,
        name TEXT NOT NULL UNIQUE,
        tags TEXT NOT NULL,
        publish_id BIGINT NOT NULL REFERENCES publishes(id),
        join_token_digest TEXT NOT NULL,
        join_token_created_at {REAL} NOT NULL,
        join_token_used_at {REAL},
        created_at {REAL} NOT NULL,
        last_seen {REAL})""",
    "CREATE INDEX IF NOT EXISTS edges_by_publish ON edges (publish_id)",
    # Session credentials, by digest; deleting the edge deletes them (explicitly, and by cascade).
    """CREATE TABLE IF NOT EXISTS edge_sessions (
        credential_digest TEXT PRIMARY KEY,
        edge_id TEXT NOT NULL REFERENCES edges(id) ON DELETE CASCADE,
        created_at {REAL} NOT NULL,
        last_contact {REAL} NOT NULL)""",
    # Inference log records from edges. (edge_id, seq) is the upload's idempotency key: a page sent twice
    # lands once. edge_id (not the name) so an edge removed and added again starts a fresh sequence.
    # On PostgreSQL the table is partitioned by received_at, one partition per UTC day made on demand
    # (opscenter/ingest.py), so old days go as whole partitions. A unique key there would have to include
    # received_at, so (edge_id, seq) is kept unique by ingest itself, which serializes each edge's pages
    # (an advisory lock) and writes only the seqs not yet stored; `id` comes from a sequence, ordering exports.
    {"sqlite": f"""CREATE TABLE IF NOT EXISTS logs (
        id {{ID}},{_LOG_COLUMNS},
        UNIQUE (edge_id, seq))""",
     "postgresql": "CREATE SEQUENCE IF NOT EXISTS logs_id_seq"},
    {"postgresql": f"""CREATE TABLE IF NOT EXISTS logs (
        id BIGINT NOT NULL DEFAULT nextval('logs_id_seq'),{_LOG_COLUMNS}) PARTITION BY RANGE (received_at)"""},
    {"postgresql": "CREATE INDEX IF NOT EXISTS logs_by_edge_seq ON logs (edge_id, seq)"},
    "CREATE INDEX IF NOT EXISTS logs_by_pipeline ON logs (pipeline_name, id)",
    "CREATE INDEX IF NOT EXISTS logs_by_partition ON logs (pipeline_name, partition, id)",
    # What each edge last said it serves (check-in) and the outcome of its last in-line update (JSON).
    """CREATE TABLE IF NOT EXISTS edge_states (
        edge_id TEXT PRIMARY KEY REFERENCES edges(id) ON DELETE CASCADE,
        serving TEXT,
        checked_in_at {REAL},
        last_update TEXT)""",
    # Assays (opscenter/assays.py): drift checks over `logs`. `spec` is the create request (JSON); `baseline` the
    # bin edges and baseline proportions fixed at creation, so results stay comparable however logs age out.
    """CREATE TABLE IF NOT EXISTS assays (
        id {ID},
        name TEXT NOT NULL UNIQUE,
        pipeline_name TEXT NOT NULL,
        spec TEXT NOT NULL,
        baseline TEXT NOT NULL,
        active BIGINT NOT NULL,
        created_at {REAL} NOT NULL,
        last_run_at {REAL},
        last_error TEXT)""",
    # One row per assay, series (partition: an edge's name, '' for all edges) and window; a run again overwrites.
    """CREATE TABLE IF NOT EXISTS assay_results (
        id {ID},
        assay_id BIGINT NOT NULL REFERENCES assays(id) ON DELETE CASCADE,
        partition TEXT NOT NULL,
        window_start BIGINT NOT NULL,
        window_end BIGINT NOT NULL,
        records BIGINT NOT NULL,
        score {REAL},
        alert BIGINT NOT NULL,
        bins TEXT NOT NULL,
        computed_at {REAL} NOT NULL,
        UNIQUE (assay_id, partition, window_start))""",
    "CREATE INDEX IF NOT EXISTS logs_by_time ON logs (pipeline_name, partition, time)",
    # Logs rolled into the object store (opscenter/rollup.py): one row per Parquet object, named while its batch
    # (one partition's records of one UTC day, ids min_id..max_id) is written under a claim, done once the
    # object is verified and the batch's rows deleted from `logs`. Done rows are the archive's catalog.
    """CREATE TABLE IF NOT EXISTS log_objects (
        key TEXT PRIMARY KEY,
        pipeline_name TEXT NOT NULL,
        partition TEXT NOT NULL,
        day_start {REAL} NOT NULL,
        min_id BIGINT NOT NULL,
        max_id BIGINT NOT NULL,
        records BIGINT,
        claimed_by TEXT,
        claimed_at {REAL},
        done_at {REAL})""",
    "CREATE INDEX IF NOT EXISTS log_objects_by_pipeline ON log_objects (pipeline_name, max_id)",
)
