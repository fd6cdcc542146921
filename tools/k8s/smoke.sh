#!/usr/bin/env bash
# Smoke test for the binaries from build.sh: start etcd + kube-apiserver on
# 127.0.0.1 (free ports, temp dir, throwaway openssl certs, the flags a test
# harness should use), wait for /readyz, run a few kubectl commands, then stop
# exactly the two processes it started.
#
#   tools/k8s/smoke.sh [ASSETS_DIR]    default: <repo>/target/k8s-test-assets
#   KEEP=1 tools/k8s/smoke.sh          keep the temp dir (certs, kubeconfig, logs)
#
# Needs openssl and curl. Uses only loopback addresses.
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd -P)
ASSETS=$(cd "${1:-$HERE/../../target/k8s-test-assets}" && pwd -P)
for b in etcd kube-apiserver kubectl; do
  [ -x "$ASSETS/$b" ] || { echo "ERROR: $ASSETS/$b missing; run tools/k8s/build.sh first" >&2; exit 1; }
done
for t in openssl curl; do command -v $t >/dev/null || { echo "ERROR: $t is required" >&2; exit 1; }; done

D=$(mktemp -d "${TMPDIR:-/tmp}/k8s-smoke.XXXXXX")
T0=$(date +%s.%N)
ts() { awk -v a="$T0" -v b="$(date +%s.%N)" 'BEGIN { printf "%5.1fs", b - a }'; }
log() { echo "==> [$(ts)] $*"; }
running() { local st; st=$(ps -o stat= -p "$1" 2>/dev/null) && [[ $st != Z* ]]; }
stop() {  # stop PID NAME: SIGTERM, up to 30 s grace, then SIGKILL; reap
  local pid=$1 name=$2 t0 i
  running "$pid" || { wait "$pid" 2>/dev/null || true; return; }
  t0=$(date +%s.%N); kill -TERM "$pid" 2>/dev/null || true
  for i in $(seq 300); do running "$pid" || break; sleep 0.1; done
  if running "$pid"; then echo "WARN: $name (pid $pid) ignored SIGTERM for 30 s; SIGKILL" >&2; kill -KILL "$pid" 2>/dev/null || true; fi
  wait "$pid" 2>/dev/null || true
  echo "==> stopped $name (pid $pid) in $(awk -v a="$t0" -v b="$(date +%s.%N)" 'BEGIN { printf "%.1fs", b - a }')"
}
cleanup() {
  local rc=$?
  # kube-apiserver first: stopped after etcd it retries etcd for minutes
  [ -z "${API_PID:-}" ] || stop "$API_PID" kube-apiserver
  [ -z "${ETCD_PID:-}" ] || stop "$ETCD_PID" etcd
  if [ $rc -ne 0 ]; then
    echo "FAILED (rc=$rc); logs kept in $D" >&2
    tail -n 30 "$D"/etcd.log "$D"/kube-apiserver.log >&2 2>/dev/null || true
  elif [ "${KEEP:-0}" = 1 ]; then echo "kept $D"; else rm -rf "$D"; fi
}
trap cleanup EXIT

# a free 127.0.0.1 port (nothing answers on it and not handed out before)
USED=" "
free_port() {
  local p
  while :; do
    p=$(( 20000 + (RANDOM * 32768 + RANDOM) % 40000 ))
    [[ $USED == *" $p "* ]] && continue
    if ! (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then echo "$p"; return; fi
  done
}
E=$(free_port); USED+="$E "; P=$(free_port); USED+="$P "; A=$(free_port)
log "temp dir $D; etcd client :$E peer :$P, apiserver :$A"

# ---- throwaway certificates (ECDSA P-256) -------------------------------------
cat > "$D/ssl.cnf" <<'EOF'
[req]
distinguished_name = dn
[dn]
[ca]
basicConstraints = critical,CA:TRUE
keyUsage = critical,keyCertSign,cRLSign,digitalSignature
subjectKeyIdentifier = hash
[server]
basicConstraints = critical,CA:FALSE
keyUsage = critical,digitalSignature,keyEncipherment
extendedKeyUsage = serverAuth
subjectAltName = DNS:localhost,IP:127.0.0.1
authorityKeyIdentifier = keyid
[client]
basicConstraints = critical,CA:FALSE
keyUsage = critical,digitalSignature,keyEncipherment
extendedKeyUsage = clientAuth
authorityKeyIdentifier = keyid
EOF
(
  cd "$D"
  o() { openssl "$@" 2>/dev/null; }
  o ecparam -name prime256v1 -genkey -noout -out ca.key
  o req -x509 -new -config ssl.cnf -extensions ca -key ca.key -subj "/CN=coder-guard-test-ca" -days 2 -out ca.crt
  leaf() {  # leaf NAME SUBJECT EXTENSION
    o ecparam -name prime256v1 -genkey -noout -out "$1.key"
    o req -new -config ssl.cnf -key "$1.key" -subj "$2" -out "$1.csr"
    o x509 -req -in "$1.csr" -CA ca.crt -CAkey ca.key -set_serial "0x$(openssl rand -hex 8)" -days 2 \
      -extfile ssl.cnf -extensions "$3" -out "$1.crt"
  }
  leaf apiserver "/CN=kube-apiserver" server
  leaf admin "/O=system:masters/CN=admin" client
  o ecparam -name prime256v1 -genkey -noout -out sa.key
  o ec -in sa.key -pubout -out sa.pub
)
log "certificates written"

# ---- etcd ---------------------------------------------------------------------------
ETCD_ARGS=(
  --name=default --data-dir="$D/etcd"
  --listen-client-urls="http://127.0.0.1:$E" --advertise-client-urls="http://127.0.0.1:$E"
  --listen-peer-urls="http://127.0.0.1:$P" --initial-advertise-peer-urls="http://127.0.0.1:$P"
  --initial-cluster="default=http://127.0.0.1:$P"
  --unsafe-no-fsync=true --log-level=warn
)
"$ASSETS/etcd" "${ETCD_ARGS[@]}" > "$D/etcd.log" 2>&1 &
ETCD_PID=$!
for _ in $(seq 300); do
  curl -fsS "http://127.0.0.1:$E/health" 2>/dev/null | grep -q '"health":"true"' && break
  kill -0 "$ETCD_PID" 2>/dev/null || { echo "etcd exited" >&2; exit 1; }
  sleep 0.1
done
curl -fsS "http://127.0.0.1:$E/health" >/dev/null
log "etcd (pid $ETCD_PID) healthy: $(curl -fsS "http://127.0.0.1:$E/health")"

# ---- kube-apiserver ---------------------------------------------------------------
API_ARGS=(
  --etcd-servers="http://127.0.0.1:$E"
  --bind-address=127.0.0.1 --advertise-address=127.0.0.1 --secure-port="$A"
  --cert-dir="$D/certs" --tls-cert-file="$D/apiserver.crt" --tls-private-key-file="$D/apiserver.key"
  --client-ca-file="$D/ca.crt"
  --authorization-mode=RBAC
  --service-cluster-ip-range=10.0.0.0/24 --allow-privileged=true
  --disable-admission-plugins=ServiceAccount
  --service-account-issuer="https://127.0.0.1:$A/"
  --service-account-key-file="$D/sa.pub" --service-account-signing-key-file="$D/sa.key"
)
"$ASSETS/kube-apiserver" "${API_ARGS[@]}" > "$D/kube-apiserver.log" 2>&1 &
API_PID=$!
CURL=(curl -sS --cacert "$D/ca.crt" --cert "$D/admin.crt" --key "$D/admin.key")
code=000
for _ in $(seq 600); do   # 60 s
  code=$("${CURL[@]}" -o /dev/null -w '%{http_code}' "https://127.0.0.1:$A/readyz" 2>/dev/null || true)
  [ "$code" = 200 ] && break
  kill -0 "$API_PID" 2>/dev/null || { echo "kube-apiserver exited" >&2; exit 1; }
  sleep 0.1
done
[ "$code" = 200 ] || { echo "kube-apiserver /readyz: HTTP $code after 60 s" >&2; exit 1; }
log "kube-apiserver (pid $API_PID) /readyz -> HTTP $code"
if command -v ss >/dev/null 2>&1; then   # every listening socket of both processes must be loopback
  LISTEN=$(ss -Hltnp | grep -E "pid=($ETCD_PID|$API_PID)," | awk '{print $4}' | sort | tr '\n' ' ')
  log "listening: $LISTEN"
  for l in $LISTEN; do [[ $l == 127.0.0.1:* ]] || { echo "ERROR: non-loopback listener $l" >&2; exit 1; }; done
fi

# ---- kubectl ------------------------------------------------------------------------
cat > "$D/kubeconfig" <<EOF
apiVersion: v1
kind: Config
clusters:
- name: test
  cluster: {server: "https://127.0.0.1:$A", certificate-authority: "$D/ca.crt"}
users:
- name: admin
  user: {client-certificate: "$D/admin.crt", client-key: "$D/admin.key"}
contexts:
- name: test
  context: {cluster: test, user: admin}
current-context: test
EOF
K=("$ASSETS/kubectl" --kubeconfig "$D/kubeconfig")
"${K[@]}" version
for _ in $(seq 100); do "${K[@]}" get ns default >/dev/null 2>&1 && break; sleep 0.1; done
"${K[@]}" get ns
"${K[@]}" auth whoami
"${K[@]}" create namespace smoke --dry-run=server -o name
log "kubectl OK"
log "etcd flags: ${ETCD_ARGS[*]}"
log "kube-apiserver flags: ${API_ARGS[*]}"
