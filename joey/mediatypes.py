"""Every media type Joey reads or writes, in one place (like oras-py's defaults.py)."""

# OCI image-spec 1.1
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_EMPTY = "application/vnd.oci.empty.v1+json"
OCI_LAYOUT_VERSION = "1.0.0"

# Joey's own: the artifactType of a pipeline manifest and the media type of its config blob.
PIPELINE_ARTIFACT = "application/vnd.joey.pipeline.v1+json"
PIPELINE_CONFIG = "application/vnd.joey.pipeline.config.v1+json"

# CNCF ModelPack (modelpack/model-spec): a model artifact's type and config, an uncompressed weight file.
MODEL_MANIFEST = "application/vnd.cncf.model.manifest.v1+json"
MODEL_CONFIG = "application/vnd.cncf.model.config.v1+json"
MODEL_WEIGHT_RAW = "application/vnd.cncf.model.weight.v1.raw"

# Referrers of a manifest other than cosign's: a CycloneDX SBOM, an OpenSSF model-signing signature (a Sigstore
# bundle, as model_signing writes it).
CYCLONEDX_JSON = "application/vnd.cyclonedx+json"
SIGSTORE_BUNDLE = "application/vnd.dev.sigstore.bundle.v0.3+json"

# Helm's OCI media types (helm.sh/docs/topics/registries).
HELM_CONFIG = "application/vnd.cncf.helm.config.v1+json"
HELM_CHART_CONTENT = "application/vnd.cncf.helm.chart.content.v1.tar+gzip"

# Manifest media types a registry may answer with; we ask for these when resolving.
MANIFEST_ACCEPT = ", ".join([
    OCI_MANIFEST,
    OCI_INDEX,
    "application/vnd.docker.distribution.manifest.v2+json",
    "application/vnd.docker.distribution.manifest.list.v2+json",
])
