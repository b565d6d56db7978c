{{/* Names and labels. */}}
{{- define "geoverdict.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "geoverdict.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" }}
{{- else if contains (include "geoverdict.name" .) .Release.Name }}
{{- .Release.Name | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name (include "geoverdict.name" .) | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}

{{/* The name of one component: consumer, torchserve, redis. */}}
{{- define "geoverdict.component" -}}
{{- printf "%s-%s" (include "geoverdict.fullname" .root) .component | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "geoverdict.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .root.Chart.Name .root.Chart.Version | replace "+" "_" }}
app.kubernetes.io/managed-by: {{ .root.Release.Service }}
app.kubernetes.io/version: {{ .root.Chart.AppVersion | quote }}
app.kubernetes.io/part-of: geoverdict
{{ include "geoverdict.selectorLabels" . }}
{{- end }}

{{- define "geoverdict.selectorLabels" -}}
app.kubernetes.io/name: {{ include "geoverdict.name" .root }}
app.kubernetes.io/instance: {{ .root.Release.Name }}
app.kubernetes.io/component: {{ .component }}
{{- end }}

{{- define "geoverdict.image" -}}
{{- printf "%s:%s%s" .image.repository (.image.tag | default .root.Chart.AppVersion) (.suffix | default "") }}
{{- end }}

{{/* Pods run as a non-root user, with the runtime's seccomp profile and no service account token. */}}
{{- define "geoverdict.podSecurityContext" -}}
runAsNonRoot: true
runAsUser: {{ .uid }}
runAsGroup: {{ .uid }}
fsGroup: {{ .uid }}
seccompProfile:
  type: RuntimeDefault
{{- end }}

{{- define "geoverdict.containerSecurityContext" -}}
allowPrivilegeEscalation: false
readOnlyRootFilesystem: true
capabilities:
  drop: [ALL]
{{- end }}

{{/* An environment value: strings as they are, numbers, booleans and lists as JSON (Helm reads
     1048588 as a float and would print 1.048588e+06). */}}
{{- define "geoverdict.envValue" -}}
{{- if kindIs "string" . }}{{ . | quote }}{{ else }}{{ toJson . | quote }}{{ end }}
{{- end }}

{{/* GEOVERDICT_<PREFIX><KEY> for each setting of a config section; a key the chart sets itself
     (a secret, a mounted file, an address) is refused with where to set it. */}}
{{- define "geoverdict.settingsEnv" -}}
{{- $managed := dict "sasl_password" "kafka.saslPassword" "ssl_cafile" "kafka.tls" "ssl_certfile" "kafka.tls" "ssl_keyfile" "kafka.tls" "url" "torchserve.enabled / torchserve.externalUrl" "key_file" "inferenceKey" "token" "inferenceKey" "redis_url" "redis" }}
{{- range $key, $value := .settings }}
{{- if hasKey $managed $key }}
{{- fail (printf "config.%s.%s is set by the chart: use %s" $.section $key (get $managed $key)) }}
{{- end }}
{{- if not (kindIs "invalid" $value) }}
- name: {{ printf "GEOVERDICT_%s%s" $.prefix ($key | upper) }}
  value: {{ include "geoverdict.envValue" $value }}
{{- end }}
{{- end }}
{{- end }}

{{- define "geoverdict.torchserveUrl" -}}
{{- if .Values.torchserve.enabled }}
{{- printf "http://%s:%d" (include "geoverdict.component" (dict "root" . "component" "torchserve")) (int (include "geoverdict.gatewayPort" .)) }}
{{- else }}
{{- required "torchserve.externalUrl: give the URL of your TorchServe's gateway (torchserve.enabled is false)" .Values.torchserve.externalUrl }}
{{- end }}
{{- end }}

{{- define "geoverdict.inClusterRedis" -}}
{{- if not (or .Values.redis.url .Values.redis.existingSecret) }}true{{ end }}
{{- end }}

{{/* Where the consumer and the gateway read the inference key Secret. */}}
{{- define "geoverdict.inferenceKeyDir" -}}/etc/geoverdict/inference-key{{- end }}

{{/* The gateway's port (files/gateway/nginx.conf listens on it). */}}
{{- define "geoverdict.gatewayPort" -}}8090{{- end }}
