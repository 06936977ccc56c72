"""Every environment variable Joey reads, in one place.

The engine's names are the seeds' contract (Wallaroo edge servers take the same ones).
"""

# Engine (seeds 001/004)
PIPELINE_URL = "PIPELINE_URL"
OCI_REGISTRY = "OCI_REGISTRY"
OCI_USERNAME = "OCI_USERNAME"
OCI_PASSWORD = "OCI_PASSWORD"
CONFIG_CPUS = "CONFIG_CPUS"
DEBUG = "DEBUG"
EDGE_BUNDLE = "EDGE_BUNDLE"
LOCAL_INFERENCE_STORAGE = "LOCAL_INFERENCE_STORAGE"
PLATEAU_PAGE_SIZE = "PLATEAU_PAGE_SIZE"

# Joey's own
STORE = "JOEY_STORE"                # packager: the local OCI image layout directory
CHART_DIR = "JOEY_CHART_DIR"        # packager: the engine chart source (default: the repo's charts/engine)
ENGINE_IMAGE = "JOEY_ENGINE_IMAGE"  # packager: engine image when the spec names none
ENGINE_IMAGE_SOURCE = "JOEY_ENGINE_IMAGE_SOURCE"  # packager publish: where to copy the engine image from when the registry lacks it (as --engine-image)
OPS_URL = "JOEY_OPS_URL"            # packager/engine: the Ops center
OPS_TOKEN = "JOEY_OPS_TOKEN"        # packager/ops: the Ops admin bearer token
OPS_DATABASE = "JOEY_OPS_DATABASE"  # ops: database URL, sqlite:///PATH (default sqlite:///joey-ops.db) or postgresql://...
OPS_PUBLIC_URL = "JOEY_OPS_PUBLIC_URL"  # ops: URL edges reach Ops at (ingress); bundles name it + /edge
# ops: the object store logs past the hot window are rolled into (docs/ops.md, "Logs in object storage")
OPS_S3_ENDPOINT = "JOEY_OPS_S3_ENDPOINT"    # http(s)://HOST[:PORT] of an S3-compatible store (default AWS S3)
OPS_S3_BUCKET = "JOEY_OPS_S3_BUCKET"        # unset: logs stay in the database
OPS_S3_PREFIX = "JOEY_OPS_S3_PREFIX"        # key prefix of the Parquet objects
OPS_S3_ACCESS_KEY_ID = "JOEY_OPS_S3_ACCESS_KEY_ID"            # else AWS_ACCESS_KEY_ID
OPS_S3_SECRET_ACCESS_KEY = "JOEY_OPS_S3_SECRET_ACCESS_KEY"    # else AWS_SECRET_ACCESS_KEY; a secret
PERSIST_DIR = "JOEY_PERSIST_DIR"    # engine: the persistent directory (default /persist)
MAX_BODY = "JOEY_MAX_BODY"          # engine: request body limit
MAX_JSON_BODY = "JOEY_MAX_JSON_BODY"  # engine: limit of a JSON request body (default 16Mi; JSON costs ~10x its size to parse)
MAX_ROWS = "JOEY_MAX_ROWS"          # engine: records per request (default 100000)
MAX_COLUMNS = "JOEY_MAX_COLUMNS"    # engine: columns per request, keys per record and across records (default 256)
MAX_CELLS = "JOEY_MAX_CELLS"        # engine: rows x columns per request (default 4000000)
LOGS_MAX_RECORDS = "JOEY_LOGS_MAX_RECORDS"  # engine: records one POST /logs answers at most (default 10000)
LOGS_MAX_BYTES = "JOEY_LOGS_MAX_BYTES"      # engine: stored bytes one POST /logs reads at most (default 16Mi)
LOG_MAX_SEGMENTS = "JOEY_LOG_MAX_SEGMENTS"  # engine: log store segment files; past it the oldest go (default 4096)
PLAIN_HTTP = "JOEY_PLAIN_HTTP"      # engine: fetch PIPELINE_URL over plain HTTP (loopback registries)
UPDATE_INTERVAL = "JOEY_UPDATE_INTERVAL"  # engine: seconds between looks for a replacement pipeline (tag, Ops); 0: never (default 30)
HEADER_TIMEOUT = "JOEY_HEADER_TIMEOUT"  # engine: seconds a request line and headers may take to arrive (default 10)
BODY_TIMEOUT = "JOEY_BODY_TIMEOUT"  # engine: seconds a request body may pause between two reads (default 30)
KEEP_ALIVE_TIMEOUT = "JOEY_KEEP_ALIVE_TIMEOUT"  # engine: whole seconds an idle kept-alive connection stays open (default 5)
MAX_CONNECTIONS = "JOEY_MAX_CONNECTIONS"  # engine: open connections past which requests get 503 (default 1000)
VERIFY_KEY = "JOEY_VERIFY_KEY"  # engine: PEM public key (or a path to one) publishes must be signed with (chart value verifyKey)
MAX_TENSOR_VALUES = "JOEY_MAX_TENSOR_VALUES"  # packager: values a declared model input/output may hold (default 16777216)
IMPORT_MAX_BYTES = "JOEY_IMPORT_MAX_BYTES"  # packager import: the most an archive may expand to (default 4x its size, at least 64Mi)
BUILDER_ID = "JOEY_BUILDER_ID"  # packager publish: runDetails.builder.id of the provenance (default https://joey.dev/packager@<version>)
SOURCE_DATE_EPOCH = "SOURCE_DATE_EPOCH"  # reproducible-builds.org: the `created` timestamp
XDG_CACHE_HOME = "XDG_CACHE_HOME"  # packager image: base for the image-build cache, $XDG_CACHE_HOME/joey (default ~/.cache/joey)
CONTAINERS_CONF = "CONTAINERS_CONF"  # packager image: podman's config; when unset, one without default ulimits
