{{/* Chart name. */}}
{{- define "sce.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Full name: release name plus chart name, unless the release name holds it already. */}}
{{- define "sce.fullname" -}}
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

{{- define "sce.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Labels on every object. */}}
{{- define "sce.labels" -}}
helm.sh/chart: {{ include "sce.chart" . }}
{{ include "sce.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: smtp-canary-exporter
{{- end }}

{{/* Labels the Service selects every location's pods by. */}}
{{- define "sce.selectorLabels" -}}
app.kubernetes.io/name: {{ include "sce.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "sce.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "sce.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/* The canary instance name: instance, else the full name. */}}
{{- define "sce.instance" -}}
{{- default (include "sce.fullname" .) .Values.instance }}
{{- end }}

{{/* The Secret the pods read: existingSecret, the chart-managed one, or none (""). */}}
{{- define "sce.secretName" -}}
{{- if .Values.secret.existingSecret }}
{{- .Values.secret.existingSecret }}
{{- else if .Values.secret.data }}
{{- include "sce.fullname" . }}
{{- end }}
{{- end }}

{{/*
The Deployments to render: one per location, or a single one without a location.
Each item: name (the Deployment's name), location ("" for none), and the location's overrides.
*/}}
{{- define "sce.deployments" -}}
{{- $full := include "sce.fullname" . }}
{{- $list := list }}
{{- if .Values.locations }}
{{- range .Values.locations }}
{{- $list = append $list (dict "name" (printf "%s-%s" $full .name | trunc 63 | trimSuffix "-") "location" .name "overrides" .) }}
{{- end }}
{{- else }}
{{- $list = append $list (dict "name" $full "location" "" "overrides" dict) }}
{{- end }}
{{- toJson $list }}
{{- end }}

{{/* The egress ports the configured relays and mailboxes need (NetworkPolicy). */}}
{{- define "sce.egressPorts" -}}
{{- $ports := list }}
{{- range (.Values.config.relays | default list) }}
{{- if .port }}
{{- $ports = append $ports (int .port) }}
{{- else }}
{{- range $.Values.networkPolicy.presetPorts }}
{{- $ports = append $ports (int .) }}
{{- end }}
{{- end }}
{{- end }}
{{- range (.Values.config.mailboxes | default list) }}
{{- $ports = append $ports (int (.port | default (ternary 143 993 (eq (toString .tls) "starttls")))) }}
{{- end }}
{{- range .Values.networkPolicy.extraEgressPorts }}
{{- $ports = append $ports (int .) }}
{{- end }}
{{- toJson ($ports | uniq | sortAlpha) }}
{{- end }}
