#!/usr/bin/env bash
# A one-node Kubernetes cluster from official sources, as plain processes on this machine:
# etcd (Debian's), kube-apiserver, kube-controller-manager, kube-scheduler, containerd (Debian's,
# with runc and a CNI bridge from containernetworking-plugins), a kubelet, kube-proxy (iptables),
# CoreDNS for the cluster's names, and KEDA's operator and metrics API server (built from their
# modules by build.sh). The project's images (podman-built) are loaded into containerd. State in
# .cache/cluster/run/; logs in .cache/cluster/run/logs/. Idempotent: what runs is left running.
# docs/operations.md, "A one-node cluster"; down.sh stops it all.
set -euo pipefail
root="$(cd "$(dirname "$0")/../.." && pwd)"
here="$root/deploy/cluster"
bin="$("$here/build.sh")"
run="$root/.cache/cluster/run"
pki="$run/pki"
logs="$run/logs"
pids="$run/pids"
mkdir -p "$pki" "$logs" "$pids"
export PATH="$bin:$PATH"
host_ip="$(ip -4 route get 1.1.1.1 | awk '{for (i = 1; i < NF; i++) if ($i == "src") print $(i + 1)}')"
[ -n "$host_ip" ] || { echo "no IPv4 address with a default route" >&2; exit 3; }
echo "$host_ip" >"$run/host-ip"
node="$(hostname | tr 'A-Z' 'a-z')"
CONTAINERD_SOCK=/run/geoverdict-containerd/containerd.sock
POD_CIDR=10.244.0.0/24
SERVICE_CIDR=10.96.0.0/16
KUBECONFIG="$run/admin.kubeconfig"
export KUBECONFIG

for tool in etcd containerd runc openssl iptables podman; do
    command -v "$tool" >/dev/null || {
        echo "$tool not found: apt-get install -y etcd-server containerd runc containernetworking-plugins openssl iptables podman" >&2
        exit 3
    }
done
[ -x /usr/lib/cni/bridge ] || { echo "apt-get install -y containernetworking-plugins" >&2; exit 3; }

say() { echo "[$(date +%H:%M:%S)] $*" >&2; }

# start NAME ARGS...: runs ARGS in the background (its own session), logged, unless NAME runs.
start() {
    local name="$1"; shift
    if [ -f "$pids/$name" ] && kill -0 "$(cat "$pids/$name")" 2>/dev/null; then
        return
    fi
    setsid "$@" >>"$logs/$name.log" 2>&1 </dev/null &
    echo $! >"$pids/$name"
    say "started $name (log: $logs/$name.log)"
}

# wait_for WHAT SECONDS COMMAND...: until COMMAND succeeds.
wait_for() {
    local what="$1" seconds="$2"; shift 2
    local deadline=$((SECONDS + seconds))
    until "$@" >/dev/null 2>&1; do
        if [ "$SECONDS" -ge "$deadline" ]; then
            echo "$what not ready after ${seconds}s; the logs are in $logs" >&2
            exit 1
        fi
        sleep 1
    done
    say "$what ready"
}

# The kubelet and kube-proxy set kernel parameters for themselves (overcommit, panic on oops,
# local routing): what they were before is kept once, and down.sh puts it back.
if [ ! -f "$run/sysctl.saved" ]; then
    for key in vm.overcommit_memory vm.panic_on_oom kernel.panic kernel.panic_on_oops \
        kernel.keys.root_maxkeys kernel.keys.root_maxbytes net.ipv4.conf.all.route_localnet; do
        echo "$key=$(sysctl -n "$key")"
    done >"$run/sysctl.saved"
fi

# --- certificates and credentials (made once) -------------------------------------------------
cert() {  # cert NAME CN SANS [CA]: a key and a certificate signed by CA (default: ca)
    local name="$1" cn="$2" sans="$3" ca="${4:-ca}"
    [ -f "$pki/$name.crt" ] && return
    openssl req -new -newkey rsa:2048 -nodes -keyout "$pki/$name.key" -subj "/CN=$cn" \
        -out "$pki/$name.csr" 2>/dev/null
    printf 'subjectAltName=%s\nextendedKeyUsage=serverAuth,clientAuth\n' "$sans" >"$pki/$name.ext"
    openssl x509 -req -in "$pki/$name.csr" -CA "$pki/$ca.crt" -CAkey "$pki/$ca.key" \
        -CAcreateserial -days 365 -extfile "$pki/$name.ext" -out "$pki/$name.crt" 2>/dev/null
}
for ca in ca front-proxy-ca; do
    [ -f "$pki/$ca.crt" ] || openssl req -x509 -new -newkey rsa:2048 -nodes -days 365 \
        -keyout "$pki/$ca.key" -out "$pki/$ca.crt" -subj "/CN=geoverdict-$ca" 2>/dev/null
done
api_sans="IP:127.0.0.1,IP:$host_ip,IP:10.96.0.1,DNS:localhost,DNS:kubernetes,DNS:kubernetes.default"
api_sans="$api_sans,DNS:kubernetes.default.svc,DNS:kubernetes.default.svc.cluster.local"
cert apiserver kube-apiserver "$api_sans"
cert front-proxy-client front-proxy-client "DNS:front-proxy-client" front-proxy-ca
# The API server's identity toward the kubelet (logs, exec): an administrator.
cert apiserver-kubelet-client "kube-apiserver-kubelet-client/O=system:masters" "DNS:kube-apiserver"
keda_sans="IP:127.0.0.1,IP:$host_ip,DNS:localhost,DNS:keda-operator.keda.svc"
keda_sans="$keda_sans,DNS:keda-metrics-apiserver.keda.svc"
cert keda keda-operator "$keda_sans"
mkdir -p "$pki/keda"
cp "$pki/ca.crt" "$pki/keda/ca.crt"; cp "$pki/keda.crt" "$pki/keda/tls.crt"; cp "$pki/keda.key" "$pki/keda/tls.key"
[ -f "$pki/sa.key" ] || openssl genrsa -out "$pki/sa.key" 2048 2>/dev/null
[ -f "$pki/sa.pub" ] || openssl rsa -in "$pki/sa.key" -pubout -out "$pki/sa.pub" 2>/dev/null
# One administrator token for the components and the proofs (a one-node test cluster, not a
# production PKI: docs/operations.md says so).
[ -f "$pki/tokens.csv" ] || echo "$(openssl rand -hex 32),admin,admin,system:masters" >"$pki/tokens.csv"
chmod 600 "$pki"/*.key "$pki/tokens.csv"
token="$(cut -d, -f1 "$pki/tokens.csv")"
cat >"$KUBECONFIG" <<EOF
apiVersion: v1
kind: Config
clusters:
  - name: geoverdict
    cluster: {server: "https://127.0.0.1:6443", certificate-authority: "$pki/ca.crt"}
users:
  - name: admin
    user: {token: "$token"}
contexts:
  - name: geoverdict
    context: {cluster: geoverdict, user: admin}
current-context: geoverdict
EOF
chmod 600 "$KUBECONFIG"

# --- control plane ----------------------------------------------------------------------------
start etcd etcd --name geoverdict --data-dir "$run/etcd" \
    --listen-client-urls http://127.0.0.1:12379 --advertise-client-urls http://127.0.0.1:12379 \
    --listen-peer-urls http://127.0.0.1:12380 --initial-advertise-peer-urls http://127.0.0.1:12380 \
    --initial-cluster geoverdict=http://127.0.0.1:12380
wait_for etcd 60 curl -sf http://127.0.0.1:12379/health

start kube-apiserver kube-apiserver --etcd-servers http://127.0.0.1:12379 \
    --bind-address 0.0.0.0 --advertise-address "$host_ip" --secure-port 6443 \
    --tls-cert-file "$pki/apiserver.crt" --tls-private-key-file "$pki/apiserver.key" \
    --client-ca-file "$pki/ca.crt" --token-auth-file "$pki/tokens.csv" \
    --authorization-mode Node,RBAC --allow-privileged \
    --service-account-issuer https://kubernetes.default.svc.cluster.local \
    --service-account-key-file "$pki/sa.pub" --service-account-signing-key-file "$pki/sa.key" \
    --service-cluster-ip-range "$SERVICE_CIDR" \
    --requestheader-client-ca-file "$pki/front-proxy-ca.crt" \
    --requestheader-allowed-names front-proxy-client \
    --requestheader-username-headers X-Remote-User --requestheader-group-headers X-Remote-Group \
    --requestheader-extra-headers-prefix X-Remote-Extra- \
    --proxy-client-cert-file "$pki/front-proxy-client.crt" \
    --proxy-client-key-file "$pki/front-proxy-client.key" \
    --enable-aggregator-routing \
    --kubelet-client-certificate "$pki/apiserver-kubelet-client.crt" \
    --kubelet-client-key "$pki/apiserver-kubelet-client.key"
wait_for kube-apiserver 120 kubectl get --raw /readyz

start kube-controller-manager kube-controller-manager --kubeconfig "$KUBECONFIG" \
    --authentication-kubeconfig "$KUBECONFIG" --authorization-kubeconfig "$KUBECONFIG" \
    --root-ca-file "$pki/ca.crt" --service-account-private-key-file "$pki/sa.key" \
    --cluster-signing-cert-file "$pki/ca.crt" --cluster-signing-key-file "$pki/ca.key" \
    --service-cluster-ip-range "$SERVICE_CIDR" --bind-address 127.0.0.1 --leader-elect=false \
    --horizontal-pod-autoscaler-sync-period 5s
start kube-scheduler kube-scheduler --kubeconfig "$KUBECONFIG" \
    --authentication-kubeconfig "$KUBECONFIG" --authorization-kubeconfig "$KUBECONFIG" \
    --bind-address 127.0.0.1 --leader-elect=false

# --- node: containerd, CNI, kubelet, kube-proxy ---------------------------------------------------
mkdir -p "$run/cni/net.d" "$run/containerd"
cat >"$run/cni/net.d/10-geoverdict.conflist" <<EOF
{
  "cniVersion": "0.4.0",
  "name": "geoverdict",
  "plugins": [
    {"type": "bridge", "bridge": "geoverdict0", "isGateway": true, "ipMasq": true,
     "hairpinMode": true,
     "ipam": {"type": "host-local", "ranges": [[{"subnet": "$POD_CIDR"}]],
              "routes": [{"dst": "0.0.0.0/0"}], "dataDir": "$run/cni/ipam"}},
    {"type": "portmap", "capabilities": {"portMappings": true}}
  ]
}
EOF
# Two CRI settings this machine needs (runc otherwise fails with "can't get final child's PID
# from pipe"): no AppArmor, no raising oom_score_adj. The pod sandbox is a stand-in for
# registry.k8s.io/pause (deploy/stand-ins/pause), which cannot be pulled here.
cat >"$run/containerd/config.toml" <<EOF
version = 2
root = "$run/containerd/root"
state = "/run/geoverdict-containerd/state"
[grpc]
  address = "$CONTAINERD_SOCK"
[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "localhost/geoverdict-stand-in/pause:compose"
  disable_apparmor = true
  restrict_oom_score_adj = true
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "/usr/lib/cni"
    conf_dir = "$run/cni/net.d"
  [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
    runtime_type = "io.containerd.runc.v2"
EOF
mkdir -p /run/geoverdict-containerd
start containerd containerd --config "$run/containerd/config.toml"
wait_for containerd 60 ctr --address "$CONTAINERD_SOCK" version

# The images: podman's, saved and imported into containerd's k8s.io namespace once per build.
"$here/load-images.sh"

cat >"$run/kubelet.yaml" <<EOF
apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
containerRuntimeEndpoint: unix://$CONTAINERD_SOCK
cgroupDriver: cgroupfs
cgroupsPerQOS: false
enforceNodeAllocatable: []
failSwapOn: false
authentication:
  anonymous: {enabled: false}
  webhook: {enabled: true}
  x509: {clientCAFile: "$pki/ca.crt"}
authorization: {mode: AlwaysAllow}
clusterDNS: ["$host_ip"]
clusterDomain: cluster.local
resolvConf: /etc/resolv.conf
tlsCertFile: "$pki/apiserver.crt"
tlsPrivateKeyFile: "$pki/apiserver.key"
# The disk holds the images twice (podman's and containerd's): evict and collect only when it
# is nearly full, not at the defaults (10 % free, 85 % used), which a build machine passes.
evictionHard: {memory.available: "200Mi", nodefs.available: "2%", imagefs.available: "2%"}
imageGCHighThresholdPercent: 99
imageGCLowThresholdPercent: 98
serializeImagePulls: false
EOF
start kubelet kubelet --config "$run/kubelet.yaml" --kubeconfig "$KUBECONFIG" \
    --root-dir "$run/kubelet" --hostname-override "$node" --node-ip "$host_ip"
wait_for "node $node" 120 sh -c "kubectl get node $node -o jsonpath='{.status.conditions[?(@.type==\"Ready\")].status}' | grep -q True"

start kube-proxy kube-proxy --kubeconfig "$KUBECONFIG" --hostname-override "$node" \
    --proxy-mode iptables --cluster-cidr 10.244.0.0/16 --masquerade-all \
    --conntrack-max-per-core 0 --metrics-bind-address 127.0.0.1:10249 \
    --healthz-bind-address 127.0.0.1:10256
wait_for kube-proxy 60 sh -c "iptables -t nat -S KUBE-SERVICES | grep -q default/kubernetes"

# CoreDNS: the cluster's names (svc.cluster.local), everything else forwarded.
cat >"$run/Corefile" <<EOF
.:53 {
    bind $host_ip
    errors
    ready 127.0.0.1:18181
    kubernetes cluster.local in-addr.arpa ip6.arpa {
        kubeconfig $KUBECONFIG geoverdict
        pods insecure
        fallthrough in-addr.arpa ip6.arpa
    }
    forward . /etc/resolv.conf
    cache 30
}
EOF
start coredns coredns -conf "$run/Corefile"
wait_for coredns 60 curl -sf http://127.0.0.1:18181/ready

# --- KEDA: its CRDs and metrics APIService in the cluster, its two servers beside it ----------
"$here/keda.sh"
say "cluster up: KUBECONFIG=$KUBECONFIG ($bin on PATH has kubectl)"
