"""Every annotation key Joey writes, in one place."""

# OCI pre-defined annotation keys (image-spec annotations.md)
CREATED = "org.opencontainers.image.created"
VERSION = "org.opencontainers.image.version"
TITLE = "org.opencontainers.image.title"
SOURCE = "org.opencontainers.image.source"
REVISION = "org.opencontainers.image.revision"
REF_NAME = "org.opencontainers.image.ref.name"

# CNCF ModelPack: where the file sits in the model's tree.
MODEL_FILEPATH = "org.cncf.model.filepath"

# Joey's own, for what no standard key covers.
MODEL_NAME = "io.joey.model.name"
MODEL_VERSION = "io.joey.model.version"
MODEL_FRAMEWORK = "io.joey.model.framework"
