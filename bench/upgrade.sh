#!/usr/bin/env bash
# Benchmark and proof: a rolling `kubicluster upgrade` on the lab (1 controller + 2 workers, TCG)
# from one Kubernetes minor to the next (the build sets: FROM=1.36.3, TO=1.37.2 unless given),
# with a workload serving throughout: a Deployment of 4 web pods behind a NodePort Service, a
# PodDisruptionBudget (maxUnavailable 1), readiness probes and a preStop pause. A client on the
# hypervisor asks every worker's NodePort 5 times a second during the whole upgrade and counts,
# per worker, the requests that failed, and the rounds in which no worker answered (what a
# load balancer in front of the workers would have seen). Then every node's kubelet version,
# `status` and `test`. Prints the upgrade's wall time and each node's.
# Usage: [FROM=1.36.3] [TO=1.37.2] bench/upgrade.sh   (builds both releases' artifacts if
# missing: with cold Go caches that alone takes tens of minutes)
set -euo pipefail
. "$(dirname "$0")/lab-common.sh"
FROM=${FROM:-1.36.3}
TO=${TO:-1.37.2}
export KUBICLUSTER_LAB=1 KUBICLUSTER_NAME=benchupg KUBICLUSTER_WORK_DIR=$TMP/work KUBICLUSTER_IMAGE=$IMAGE \
  KUBICLUSTER_MEMORY_MIB=1536 KUBICLUSTER_ARTIFACTS=build KUBICLUSTER_CNI=bridge

"$BIN" image build >/dev/null 2>&1
for v in "$FROM" "$TO"; do "$BIN" artifacts build --kubernetes-version "$v" >/dev/null; done
KUBECTL=${KUBICLUSTER_CACHE_DIR:-$HOME/.cache/kubicluster}/artifacts/kubernetes-v$TO/kubectl

echo "up at $FROM (no smoke test)"
t0=$(now)
"$BIN" up --skip-test --kubernetes-version "$FROM" >"$TMP/up" 2>&1 || { cat "$TMP/up" >&2; exit 1; }
echo "  $(secs "$t0" "$(now)") s"
NS=$(ip netns list | awk '/^kubilab-benchupg/ { print $1; exit }')
KC=$TMP/work/benchupg/certs_and_configs/admin.kubeconfig
k() { ip netns exec "$NS" "$KUBECTL" --kubeconfig "$KC" "$@"; }
IMG=kubicluster.local/busybox:host  # the build's busybox, imported on every worker

k apply -f - >/dev/null <<EOF
apiVersion: apps/v1
kind: Deployment
metadata: {name: web, namespace: default}
spec:
  replicas: 4
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec:
      terminationGracePeriodSeconds: 10
      securityContext: {runAsNonRoot: true, runAsUser: 65534, seccompProfile: {type: RuntimeDefault}}
      containers:
      - name: web
        image: $IMG
        imagePullPolicy: IfNotPresent
        securityContext: {allowPrivilegeEscalation: false, capabilities: {drop: [ALL]}}
        command: [sh, -c, 'mkdir -p /tmp/www && hostname > /tmp/www/index.html && exec httpd -f -p 8080 -h /tmp/www']
        readinessProbe: {httpGet: {path: /, port: 8080}, periodSeconds: 2}
        lifecycle: {preStop: {exec: {command: [sleep, "5"]}}}
---
apiVersion: v1
kind: Service
metadata: {name: web, namespace: default}
spec:
  type: NodePort
  selector: {app: web}
  ports: [{port: 80, targetPort: 8080, nodePort: 30080}]
---
apiVersion: policy/v1
kind: PodDisruptionBudget
metadata: {name: web, namespace: default}
spec:
  maxUnavailable: 1
  selector: {matchLabels: {app: web}}
EOF
k rollout status deployment/web --timeout=300s >/dev/null
WORKERS=$(k get nodes -o jsonpath='{range .items[*]}{.status.addresses[?(@.type=="InternalIP")].address}{" "}{end}')
echo "workload: 4 web pods ready; NodePort 30080 on $WORKERS"

# The client: one round every 0.2 s, each worker asked once (1 s timeout).
client() {
  while [ ! -e "$TMP/stop" ]; do
    none=1
    for ip in $WORKERS; do
      if ip netns exec "$NS" curl -fsS -m 1 -o /dev/null "http://$ip:30080/" 2>/dev/null; then
        echo "ok $ip"; none=0
      else
        echo "fail $ip"
      fi
    done
    [ $none = 1 ] && echo "none"
    sleep 0.2
  done >"$TMP/requests"
}
client &
CLIENT=$!

upgrade_with_client "$FROM" "$TO"
grep -E "^upgrade \[|drained|uncordoned|every node runs" "$TMP/upgrade" | sed 's/^/  /'
echo "  upgrade wall time: $(secs "$t0" "$t1") s"
awk '
  $1 == "ok" { ok[$2]++; n[$2]++ } $1 == "fail" { bad[$2]++; n[$2]++ } $1 == "none" { none++ }
  END { for (ip in n) printf "  requests to %s: %d, failed %d\n", ip, n[ip], bad[ip]
        printf "  rounds in which no worker answered: %d\n", none }' "$TMP/requests"
k get nodes -o custom-columns=NODE:.metadata.name,KUBELET:.status.nodeInfo.kubeletVersion,READY:.status.conditions[-1].type,UNSCHEDULABLE:.spec.unschedulable | sed 's/^/  /'
"$BIN" status >/dev/null && echo "  status: healthy"
"$BIN" test 2>&1 | tail -1 | sed 's/^/  /'
"$BIN" upgrade --to "$TO" 2>&1 | grep -E "every node runs" | sed 's/^/  again: /'
