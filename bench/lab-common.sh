# Shared by the lab benchmarks (sourced): root check, release build, a temp dir removed (with
# the bench's lab) on exit, and the timing helpers. The caller exports its KUBICLUSTER_* settings.
cd "$(dirname "$0")/.."
[ "$(id -u)" = 0 ] || { echo "error: run as root (the lab needs network namespaces)" >&2; exit 1; }
cargo build --release --locked -q
BIN=$PWD/target/release/kubicluster
IMAGE=${KUBICLUSTER_IMAGE:-$PWD/target/lab-image/kubicluster-bookworm.qcow2}
TMP=$(mktemp -d /tmp/kubibench.XXXXXX)
cleanup() { "$BIN" lab down >/dev/null 2>&1 || true; rm -rf "$TMP"; }
trap cleanup EXIT

now() { date +%s.%N; }
secs() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", b - a }'; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.1f", a / b }'; }
