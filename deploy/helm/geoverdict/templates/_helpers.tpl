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
{{- $managed := dict "sasl_password" "use kafka.saslPassword" "ssl_cafile" "use kafka.tls" "ssl_certfile" "use kafka.tls" "ssl_keyfile" "use kafka.tls" "url" (printf "use %s.enabled / %s.externalUrl" .section .section) "key_file" "use inferenceKey" "token" "use inferenceKey" "redis_url" "use redis" "auth_header" "Triton's entrypoint restricts with the authorization header" "model_server" "use modelServer" }}
{{- range $key, $value := .settings }}
{{- if hasKey $managed $key }}
{{- fail (printf "config.%s.%s is set by the chart: %s" $.section $key (get $managed $key)) }}
{{- end }}
{{- if not (kindIs "invalid" $value) }}
- name: {{ printf "GEOVERDICT_%s%s" $.prefix ($key | upper) }}
  value: {{ include "geoverdict.envValue" $value }}
{{- end }}
{{- end }}
{{- end }}

{{/* The model server the consumers call (modelServer), checked. */}}
{{- define "geoverdict.modelServer" -}}
{{- if not (has .Values.modelServer (list "torchserve" "triton")) }}
{{- fail (printf "modelServer: torchserve or triton, got %v" .Values.modelServer) }}
{{- end }}
{{- .Values.modelServer }}
{{- end }}

{{/* "true" when this release runs TorchServe (the model server, and not an external one). */}}
{{- define "geoverdict.torchserveOn" -}}
{{- if and (eq (include "geoverdict.modelServer" .) "torchserve") .Values.torchserve.enabled }}true{{ end }}
{{- end }}

{{/* "true" when this release runs Triton. */}}
{{- define "geoverdict.tritonOn" -}}
{{- if and (eq (include "geoverdict.modelServer" .) "triton") .Values.triton.enabled }}true{{ end }}
{{- end }}

{{- define "geoverdict.torchserveUrl" -}}
{{- if .Values.torchserve.enabled }}
{{- printf "http://%s:%d" (include "geoverdict.component" (dict "root" . "component" "torchserve")) (int (include "geoverdict.gatewayPort" .)) }}
{{- else }}
{{- required "torchserve.externalUrl: give the URL of your TorchServe's gateway (torchserve.enabled is false)" .Values.torchserve.externalUrl }}
{{- end }}
{{- end }}

{{- define "geoverdict.tritonUrl" -}}
{{- if .Values.triton.enabled }}
{{- printf "http://%s:%d" (include "geoverdict.component" (dict "root" . "component" "triton")) (int (include "geoverdict.tritonHttpPort" .)) }}
{{- else }}
{{- required "triton.externalUrl: give the URL of your Triton (triton.enabled is false)" .Values.triton.externalUrl }}
{{- end }}
{{- end }}

{{/* Triton's HTTP (inference, health) and metrics ports, in its arguments and its Service. */}}
{{- define "geoverdict.tritonHttpPort" -}}8000{{- end }}
{{- define "geoverdict.tritonMetricsPort" -}}8002{{- end }}

{{/* Where the model server finds the archives, from .store (a modelStore section) named
     .section: the image's own, a volume of yours, or an init container's copy. */}}
{{- define "geoverdict.checkModelStore" -}}
{{- if not (has .store.source (list "image" "volume" "initContainer")) }}
{{- fail (printf "%s.modelStore.source: image, volume or initContainer" .section) }}
{{- end }}
{{- end }}

{{/* The init container that copies the archives into the model-store volume (initContainer). */}}
{{- define "geoverdict.modelStoreInitContainers" -}}
{{- if eq .store.source "initContainer" }}
initContainers:
  - name: model-store
    image: {{ required (printf "%s.modelStore.initContainer.image: the image holding the archives" .section) .store.initContainer.image }}
    command:
      {{- toYaml .store.initContainer.command | nindent 6 }}
    securityContext:
      {{- include "geoverdict.containerSecurityContext" . | nindent 6 }}
    volumeMounts:
      - {name: model-store, mountPath: /model-store}
{{- end }}
{{- end }}

{{/* The model-store volume (volume: yours, read-only; initContainer: an emptyDir). */}}
{{- define "geoverdict.modelStoreVolume" -}}
{{- if eq .store.source "volume" }}
- name: model-store
  {{- if not .store.volume }}
  {{- fail (printf "%s.modelStore.volume: a volume source, e.g. {persistentVolumeClaim: {claimName: models}}" .section) }}
  {{- end }}
  {{- toYaml .store.volume | nindent 2 }}
{{- else if eq .store.source "initContainer" }}
- name: model-store
  emptyDir: {sizeLimit: 2Gi}
{{- end }}
{{- end }}

{{/* A model server's resources, with its GPUs (gpu.enabled: nvidia.com/gpu limits). */}}
{{- define "geoverdict.serverResources" -}}
{{- $resources := deepCopy .resources }}
{{- if .gpu.enabled }}
{{- $_ := set $resources "limits" (merge (dict "nvidia.com/gpu" (int .gpu.count)) ($resources.limits | default dict)) }}
{{- end }}
{{- toYaml $resources }}
{{- end }}

{{- define "geoverdict.inClusterRedis" -}}
{{- if not (or .Values.redis.url .Values.redis.existingSecret) }}true{{ end }}
{{- end }}

{{/* Where the consumer and the gateway read the inference key Secret. */}}
{{- define "geoverdict.inferenceKeyDir" -}}/etc/geoverdict/inference-key{{- end }}

{{/* The gateway's port (files/gateway/nginx.conf listens on it). */}}
{{- define "geoverdict.gatewayPort" -}}8090{{- end }}

{{/* The PodDisruptionBudget of one component's pods (.budget: its podDisruptionBudget values). */}}
{{- define "geoverdict.podDisruptionBudget" -}}
{{- $ctx := dict "root" .root "component" .component }}
apiVersion: policy/v1
kind: PodDisruptionBudget
metadata:
  name: {{ include "geoverdict.component" $ctx }}
  labels:
    {{- include "geoverdict.labels" $ctx | nindent 4 }}
spec:
  maxUnavailable: {{ .budget.maxUnavailable }}
  selector:
    matchLabels:
      {{- include "geoverdict.selectorLabels" $ctx | nindent 6 }}
{{- end }}
