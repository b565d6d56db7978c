#!/usr/bin/env bash
# Stops the one-node cluster up.sh started: its pods (through containerd), every process it
# recorded, the proof's Kafka container, kube-proxy's iptables chains and the pod bridge. The
# state in .cache/cluster/run/ is kept (`rm -rf .cache/cluster/run` forgets the cluster).
set -uo pipefail
root="$(cd "$(dirname "$0")/../.." && pwd)"
run="$root/.cache/cluster/run"
bin="$root/.cache/cluster/bin"
sock=/run/geoverdict-containerd/containerd.sock
say() { echo "[$(date +%H:%M:%S)] $*" >&2; }

if [ -f "$run/containers.conf" ]; then
    CONTAINERS_CONF="$run/containers.conf" podman rm -f geoverdict-cluster-kafka >/dev/null 2>&1
fi
# The kubelet first, so it does not restart what is removed next.
stop() {
    local name="$1" pid
    [ -f "$run/pids/$name" ] || return 0
    pid="$(cat "$run/pids/$name")"
    if kill -0 "$pid" 2>/dev/null; then
        kill -TERM -- "-$pid" 2>/dev/null || kill -TERM "$pid"
        for _ in $(seq 30); do kill -0 "$pid" 2>/dev/null || break; sleep 1; done
        kill -KILL -- "-$pid" 2>/dev/null
        say "stopped $name"
    fi
    rm -f "$run/pids/$name"
}
stop kubelet
if [ -S "$sock" ]; then
    for task in $(ctr --address "$sock" -n k8s.io tasks ls -q 2>/dev/null); do
        ctr --address "$sock" -n k8s.io tasks kill -s KILL "$task" >/dev/null 2>&1
    done
    sleep 2
    for container in $(ctr --address "$sock" -n k8s.io containers ls -q 2>/dev/null); do
        ctr --address "$sock" -n k8s.io tasks delete -f "$container" >/dev/null 2>&1
        ctr --address "$sock" -n k8s.io containers delete "$container" >/dev/null 2>&1
    done
fi
for name in keda-metrics-apiserver keda-operator coredns kube-proxy containerd \
    kube-scheduler kube-controller-manager kube-apiserver etcd; do
    stop "$name"
done
# containerd's shims outlive it: any left for this containerd's state
pkill -f "containerd-shim-runc-v2 -namespace k8s.io .*geoverdict-containerd" 2>/dev/null
[ -x "$bin/kube-proxy" ] && "$bin/kube-proxy" --cleanup >/dev/null 2>&1
ip link del geoverdict0 2>/dev/null
# What the kubelet and the CNI plugins left in iptables (pods killed without a CNI teardown):
# the kubelet's chains and each pod's masquerading chain of the geoverdict network.
iptables -D INPUT -j KUBE-FIREWALL 2>/dev/null
iptables -D OUTPUT -j KUBE-FIREWALL 2>/dev/null
for table in filter nat mangle; do
    for chain in KUBE-FIREWALL KUBE-KUBELET-CANARY KUBE-IPTABLES-HINT; do
        iptables -t "$table" -F "$chain" 2>/dev/null && iptables -t "$table" -X "$chain" 2>/dev/null
    done
done
iptables -t nat -S POSTROUTING | grep 'name: \\"geoverdict\\"' | while read -r rule; do
    chain="${rule##*-j }"
    eval "iptables -t nat ${rule/-A/-D}" && iptables -t nat -F "$chain" && iptables -t nat -X "$chain"
done
rm -rf "$run/cni/ipam"
# The kernel parameters as they were before up.sh
if [ -f "$run/sysctl.saved" ]; then
    while IFS= read -r setting; do sysctl -qw "$setting" 2>/dev/null; done <"$run/sysctl.saved"
    rm -f "$run/sysctl.saved"
fi
grep -qs " /run/geoverdict-containerd" /proc/mounts && \
    grep " /run/geoverdict-containerd" /proc/mounts | awk '{print $2}' | sort -r | xargs -r umount 2>/dev/null
grep -s "$run/kubelet" /proc/mounts | awk '{print $2}' | sort -r | xargs -r umount 2>/dev/null
say "cluster down (state kept in $run)"
