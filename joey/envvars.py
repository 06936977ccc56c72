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
OPS_URL = "JOEY_OPS_URL"            # packager/engine: the Ops center
OPS_TOKEN = "JOEY_OPS_TOKEN"        # packager/ops: the Ops admin bearer token
OPS_DATABASE = "JOEY_OPS_DATABASE"  # ops: database URL, sqlite:///PATH (default sqlite:///joey-ops.db) or postgresql://...
OPS_PUBLIC_URL = "JOEY_OPS_PUBLIC_URL"  # ops: URL edges reach Ops at (ingress); bundles name it + /edge
PERSIST_DIR = "JOEY_PERSIST_DIR"    # engine: the persistent directory (default /persist)
MAX_BODY = "JOEY_MAX_BODY"          # engine: request body limit
PLAIN_HTTP = "JOEY_PLAIN_HTTP"      # engine: fetch PIPELINE_URL over plain HTTP (loopback registries)
UPDATE_INTERVAL = "JOEY_UPDATE_INTERVAL"  # engine: seconds between looks for a replacement pipeline (tag, Ops); 0: never (default 30)
VERIFY_KEY = "JOEY_VERIFY_KEY"  # engine: PEM public key (or a path to one) publishes must be signed with (chart value verifyKey)
BUILDER_ID = "JOEY_BUILDER_ID"  # packager publish: runDetails.builder.id of the provenance (default https://joey.dev/packager@<version>)
SOURCE_DATE_EPOCH = "SOURCE_DATE_EPOCH"  # reproducible-builds.org: the `created` timestamp
XDG_CACHE_HOME = "XDG_CACHE_HOME"  # packager image: base for the image-build cache, $XDG_CACHE_HOME/joey (default ~/.cache/joey)
CONTAINERS_CONF = "CONTAINERS_CONF"  # packager image: podman's config; when unset, one without default ulimits
