"""The Ops tables, created on start (IF NOT EXISTS). `{ID}`/`{REAL}` are filled per dialect by ops.db.

Times are UNIX seconds (float) from the app's clock; JSON documents are stored as text on both backends.
"""

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
    """CREATE TABLE IF NOT EXISTS logs (
        id {ID},
        pipeline_name TEXT NOT NULL,
        edge_id TEXT NOT NULL,
        partition TEXT NOT NULL,
        seq BIGINT NOT NULL,
        time BIGINT,
        record TEXT NOT NULL,
        received_at {REAL} NOT NULL,
        UNIQUE (edge_id, seq))""",
    "CREATE INDEX IF NOT EXISTS logs_by_pipeline ON logs (pipeline_name, id)",
    "CREATE INDEX IF NOT EXISTS logs_by_partition ON logs (pipeline_name, partition, id)",
    # What each edge last said it serves (check-in) and the outcome of its last in-line update (JSON).
    """CREATE TABLE IF NOT EXISTS edge_states (
        edge_id TEXT PRIMARY KEY REFERENCES edges(id) ON DELETE CASCADE,
        serving TEXT,
        checked_in_at {REAL},
        last_update TEXT)""",
)
