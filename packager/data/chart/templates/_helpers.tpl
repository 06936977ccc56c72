{{/*
Expand the name of the chart.
*/}}
{{- define "engine.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
Create a default fully qualified app name.
Truncated at 63 chars because some Kubernetes name fields are limited to this (by the DNS naming spec).
If the release name contains the chart name it is used as the full name.
*/}}
{{- define "engine.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{/*
Create chart name and version as used by the chart label.
*/}}
{{- define "engine.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
Common labels
*/}}
{{- define "engine.labels" -}}
helm.sh/chart: {{ include "engine.chart" . }}
{{ include "engine.selectorLabels" . }}
{{- if .Chart.AppVersion }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
{{- end }}
app.kubernetes.io/component: engine
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end }}

{{/*
Selector labels
*/}}
{{- define "engine.selectorLabels" -}}
app.kubernetes.io/name: {{ include "engine.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{/*
The engine image: pinned by digest when one is given, else by tag.
*/}}
{{- define "engine.image" -}}
{{- $repository := required "image.repository is required: the engine image, e.g. registry.example.com/joey/engines/joey-engine" .Values.image.repository }}
{{- if .Values.image.digest }}
{{- printf "%s@%s" $repository .Values.image.digest }}
{{- else }}
{{- printf "%s:%s" $repository (required "image.tag or image.digest is required" .Values.image.tag) }}
{{- end }}
{{- end }}

{{/*
OCI_REGISTRY: the configured host, else the host part of pipelineUrl.
*/}}
{{- define "engine.ociRegistry" -}}
{{- .Values.ociRegistry.registry | default (splitList "/" .Values.pipelineUrl | first) }}
{{- end }}

{{/*
The Secret holding OCI_USERNAME/OCI_PASSWORD, or "" when the registry is pulled from anonymously.
*/}}
{{- define "engine.ociSecretName" -}}
{{- if .Values.ociRegistry.existingSecret }}
{{- .Values.ociRegistry.existingSecret }}
{{- else if .Values.ociRegistry.username }}
{{- printf "%s-oci" (include "engine.fullname" .) }}
{{- end }}
{{- end }}

{{/*
The Secret holding EDGE_BUNDLE, or "" when the engine has no edge bundle.
*/}}
{{- define "engine.edgeBundleSecretName" -}}
{{- if .Values.existingEdgeBundleSecret }}
{{- .Values.existingEdgeBundleSecret }}
{{- else if .Values.edgeBundle }}
{{- printf "%s-edge-bundle" (include "engine.fullname" .) }}
{{- end }}
{{- end }}

{{/*
The claim mounted at /persist, or "" for an emptyDir. An edge bundle forces a claim: its join token
works once, so the credential it is exchanged for must outlive the pod.
*/}}
{{- define "engine.claimName" -}}
{{- if .Values.persistence.existingClaim }}
{{- .Values.persistence.existingClaim }}
{{- else if or .Values.persistence.enabled (include "engine.edgeBundleSecretName" .) }}
{{- printf "%s-persist" (include "engine.fullname" .) }}
{{- end }}
{{- end }}

{{/*
kubernetes.io/arch of the nodes the engine runs on.
*/}}
{{- define "engine.nodeArch" -}}
{{- get (dict "x86" "amd64" "arm" "arm64") .Values.engine.arch }}
{{- end }}

{{/*
The engine pod's node selector: .Values.nodeSelector over kubernetes.io/arch from engine.arch and, when the
engine takes GPUs, NVIDIA GPU feature discovery's nvidia.com/gpu.present, so it lands where the GPU variant runs.
*/}}
{{- define "engine.nodeSelector" -}}
{{- $defaults := dict "kubernetes.io/arch" (include "engine.nodeArch" .) }}
{{- if gt (int .Values.engine.gpus) 0 }}
{{- $_ := set $defaults "nvidia.com/gpu.present" "true" }}
{{- end }}
{{- merge (deepCopy .Values.nodeSelector) $defaults | toYaml }}
{{- end }}
