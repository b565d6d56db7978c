#!/usr/bin/env bash
# KEDA on the one-node cluster (up.sh runs this): its CRDs from its module's config/crd/bases,
# the external metrics APIService pointing at its metrics API server, and its two servers, the
# operator and that metrics API server, as processes beside the control plane (KUBECONFIG: the
# cluster's administrator; TLS between them and toward the aggregator from up.sh's CA).
set -euo pipefail
root="$(cd "$(dirname "$0")/../.." && pwd)"
KEDA_VERSION=v2.21.1
run="$root/.cache/cluster/run"
pki="$run/pki"
logs="$run/logs"
pids="$run/pids"
bin="$root/.cache/cluster/bin"
export PATH="$bin:$PATH" KUBECONFIG="$run/admin.kubeconfig"
host_ip="$(cat "$run/host-ip")"
module="$(go env GOMODCACHE)/github.com/kedacore/keda/v2@$KEDA_VERSION"
if [ ! -d "$module/config/crd/bases" ]; then
    GOTOOLCHAIN=go1.27.4 go mod download "github.com/kedacore/keda/v2@$KEDA_VERSION"
fi
ADAPTER_PORT=16443

kubectl apply --server-side -f "$module/config/crd/bases" >/dev/null
kubectl create namespace keda --dry-run=client -o yaml | kubectl apply -f - >/dev/null
ca_bundle="$(base64 -w0 "$pki/ca.crt")"
kubectl apply -f - >/dev/null <<MANIFESTS
apiVersion: v1
kind: Service
metadata: {name: keda-metrics-apiserver, namespace: keda}
spec:
  ports: [{name: https, port: 443, targetPort: $ADAPTER_PORT}]
---
apiVersion: v1
kind: Endpoints
metadata: {name: keda-metrics-apiserver, namespace: keda}
subsets:
  - addresses: [{ip: "$host_ip"}]
    ports: [{name: https, port: $ADAPTER_PORT}]
---
apiVersion: apiregistration.k8s.io/v1
kind: APIService
metadata: {name: v1beta1.external.metrics.k8s.io}
spec:
  service: {name: keda-metrics-apiserver, namespace: keda, port: 443}
  group: external.metrics.k8s.io
  version: v1beta1
  caBundle: $ca_bundle
  groupPriorityMinimum: 100
  versionPriority: 100
MANIFESTS

start() {
    local name="$1"; shift
    if [ -f "$pids/$name" ] && kill -0 "$(cat "$pids/$name")" 2>/dev/null; then
        return
    fi
    setsid env POD_NAMESPACE=keda KEDA_CLUSTER_OBJECT_NAMESPACE=keda WATCH_NAMESPACE= \
        "$@" >>"$logs/$name.log" 2>&1 </dev/null &
    echo $! >"$pids/$name"
    echo "[$(date +%H:%M:%S)] started $name (log: $logs/$name.log)" >&2
}
start keda-operator keda --kubeconfig "$KUBECONFIG" --leader-elect=false \
    --zap-log-level=info --zap-encoder=console \
    --metrics-bind-address 127.0.0.1:18080 --health-probe-bind-address 127.0.0.1:18081 \
    --metrics-service-bind-address 127.0.0.1:9666 --cert-dir "$pki/keda" \
    --enable-cert-rotation=false --enable-webhook-patching=false --enable-apiservice-patching=false
start keda-metrics-apiserver keda-adapter --secure-port "$ADAPTER_PORT" --port 18082 \
    --lister-kubeconfig "$KUBECONFIG" --authentication-kubeconfig "$KUBECONFIG" \
    --authorization-kubeconfig "$KUBECONFIG" \
    --client-ca-file "$pki/ca.crt" --tls-cert-file "$pki/keda/tls.crt" \
    --tls-private-key-file "$pki/keda/tls.key" --cert-dir "$pki/keda" \
    --metrics-service-address 127.0.0.1:9666 --zap-log-level=info
deadline=$((SECONDS + 120))
until kubectl get --raw /apis/external.metrics.k8s.io/v1beta1 >/dev/null 2>&1; do
    if [ "$SECONDS" -ge "$deadline" ]; then
        echo "KEDA's metrics API not served after 120 s: $logs/keda-*.log" >&2
        exit 1
    fi
    sleep 2
done
echo "[$(date +%H:%M:%S)] KEDA $KEDA_VERSION ready (external.metrics.k8s.io served)" >&2
