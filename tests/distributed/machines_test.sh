#!/bin/sh
# A cluster across machines, on one machine: three network namespaces, each with its own
# address on a bridge, play three machines.
#
#   machines_test.sh SCHEDULER_PROGRAM MACHINES_EXAMPLE [MPI_EXAMPLE MPIRUN]
#
# 1. tessera-scheduler on machine A bound to every interface (tcp://0.0.0.0:PORT): its
#    scheduler file must name A's address, not 0.0.0.0.
# 2. The example program as a worker on B and on C (their listening address left to the
#    default), and as the client on A: it checks that the workers report their machines'
#    addresses, spreads tasks over both, sums them in a tree (workers fetch from each other)
#    and gathers from both.
# 3. With MPI: mpirun starts 4 ranks over A, B and C (a stand-in for ssh enters the
#    namespace and gives it its own host name): the scheduler must listen on A's address,
#    the workers on theirs, and the cluster be secured with a generated key.
#
# Needs root (namespaces, a bridge); exits 77 (skipped) without it.
set -u
scheduler=$1
example=$2
mpi_example=${3:-}
mpirun=${4:-}

skip() {
  echo "skipped: $*"
  exit 77
}
fail() {
  echo "FAILED: $*"
  for f in "$dir"/*.log; do
    [ -f "$f" ] && { echo "--- $f"; tail -n 30 "$f"; }
  done
  exit 1
}

[ "$(id -u)" = 0 ] || skip "needs root to make network namespaces"
command -v ip >/dev/null 2>&1 || skip "needs iproute2's ip"
command -v unshare >/dev/null 2>&1 || skip "needs util-linux's unshare"

# Everything lives in namespaces of its own, the bridge too (namespace s): the host's
# interfaces, routes and firewall are not touched, and the subnet cannot clash with them.
tag="tsr$$"
net="10.213.0"
dir=$(mktemp -d)
pids=""

cleanup() {
  for p in $pids; do kill "$p" 2>/dev/null; done
  for m in a b c; do  # mpirun's daemons and ranks too
    ip netns pids "$tag$m" 2>/dev/null | xargs -r kill 2>/dev/null
  done
  sleep 0.3
  for m in a b c; do
    ip netns pids "$tag$m" 2>/dev/null | xargs -r kill -9 2>/dev/null
    ip netns del "$tag$m" 2>/dev/null
  done
  ip netns del "${tag}s" 2>/dev/null
  rm -rf "$dir"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# What an earlier run killed outright (SIGKILL at a timeout runs no trap) left behind: the
# namespaces of a test process that is gone, with what still runs in them.
for ns in $(ip netns list 2>/dev/null | sed -n 's/^\(tsr[0-9][0-9]*[abcs]\)\( .*\)\{0,1\}$/\1/p'); do
  owner=$(echo "$ns" | sed 's/^tsr\([0-9]*\).$/\1/')
  kill -0 "$owner" 2>/dev/null && continue
  ip netns pids "$ns" 2>/dev/null | xargs -r kill -9 2>/dev/null
  ip netns del "$ns" 2>/dev/null
done

ip netns add "${tag}s" 2>/dev/null || skip "cannot make network namespaces here"
ip -n "${tag}s" link add br0 type bridge 2>/dev/null || skip "cannot make a bridge here"
ip -n "${tag}s" link set br0 up
i=1
for m in a b c; do
  ip netns add "$tag$m" || fail "namespace $m"
  ip -n "${tag}s" link add "v$m" type veth peer name eth0 netns "$tag$m" || fail "veth for $m"
  ip -n "${tag}s" link set "v$m" master br0 up
  ip -n "$tag$m" addr add "$net.$i/24" dev eth0
  ip -n "$tag$m" link set eth0 up
  ip -n "$tag$m" link set lo up
  i=$((i + 1))
done
on() {  # on MACHINE COMMAND...: runs COMMAND on that machine
  m=$1
  shift
  ip netns exec "$tag$m" "$@"
}
start() {  # start MACHINE LOG COMMAND...: starts COMMAND there, in the background
  m=$1
  log=$2
  shift 2
  ip netns exec "$tag$m" "$@" >"$log" 2>&1 &
  pids="$pids $!"
}

# 1. The scheduler on every interface of A.
start a "$dir/scheduler.log" "$scheduler" --address "tcp://0.0.0.0:8786" \
  --scheduler-file "$dir/scheduler.json" --http ""
for _ in $(seq 400); do
  [ -s "$dir/scheduler.json" ] && break
  sleep 0.05
done
grep -q "\"tcp://$net.1:8786\"" "$dir/scheduler.json" ||
  fail "the scheduler file names $(cat "$dir/scheduler.json" 2>/dev/null), not A's address"
address="tcp://$net.1:8786"

# 2. Workers on B and C, the client on A.
start b "$dir/worker-b.log" "$example" "--tessera-worker=$address"
start c "$dir/worker-c.log" "$example" "--tessera-worker=$address"
on a timeout 60 "$example" "$address" 2 >"$dir/client.log" 2>&1 || fail "the client failed"
cat "$dir/client.log"
grep -q "at tcp://$net.2:" "$dir/client.log" || fail "no worker at B's address"
grep -q "at tcp://$net.3:" "$dir/client.log" || fail "no worker at C's address"

# 3. MPI across the three machines.
if [ -n "$mpi_example" ] && [ -x "$mpi_example" ] && [ -n "$mpirun" ]; then
  cat >"$dir/enter" <<EOF
#!/bin/sh
# As ssh [OPTIONS] HOST COMMAND...: COMMAND on the namespace HOST, under its own host name.
while [ "\${1#-}" != "\$1" ]; do shift; done
host=\$1
shift
exec ip netns exec "\$host" unshare --uts sh -c 'hostname "\$0"; exec sh -c "\$*"' "\$host" "\$@"
EOF
  chmod +x "$dir/enter"
  # mpirun itself runs on A (its own host name is not in --host: it starts daemons on all three).
  on a env OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 \
    OMPI_MCA_plm_rsh_agent="$dir/enter" OMPI_MCA_oob_tcp_if_include="$net.0/24" \
    OMPI_MCA_btl_tcp_if_include="$net.0/24" OMPI_MCA_btl="self,tcp" \
    timeout 120 "$mpirun" --host "${tag}a,${tag}b,${tag}c" --map-by node --oversubscribe -np 4 \
    "$mpi_example" >"$dir/mpi.log" 2>&1 || fail "mpirun across the machines failed"
  cat "$dir/mpi.log"
  # Ranks 0 and 3 on A, rank 1 (the client) on B, rank 2 on C.
  grep -q "scheduler at tcp://$net.1:" "$dir/mpi.log" || fail "the scheduler is not on A's address"
  grep -q "mpi-rank-2 joined.*data at tcp://$net.3:" "$dir/mpi.log" || fail "rank 2 not on C's address"
  grep -q "mpi-rank-3 joined.*data at tcp://$net.1:" "$dir/mpi.log" || fail "rank 3 not on A's address"
  grep -q "2 worker ranks, results exact, secured: ok" "$dir/mpi.log" || fail "MPI results"
else
  echo "MPI part not run (no MPI example given)"
fi
echo "machines: ok"
