#!/usr/bin/env bash
# A Docker Swarm of N nodes on this one machine, for CI and for trying the cluster on one box (issue 23).
#
#   netns-swarm.sh up [N]          N nodes (default 3, at most 50): studio-swarm-1 manager, the others workers
#   netns-swarm.sh down [--keep-data]
#   netns-swarm.sh load IMAGE...   docker save from the host's dockerd, docker load into every node
#   netns-swarm.sh status          one line per node
#
# Each node is a network namespace `studio-swarm-K` with its own dockerd (and the containerd that dockerd
# supervises): data root $STUDIO_SWARM_DATA/nodeK, exec root, socket, pidfile, daemon.json and log under the
# short runtime dir $STUDIO_SWARM_DIR/nK. Nodes are wired through a bridge in a hub namespace, not in the root
# one: the host's Docker sets the root FORWARD policy to DROP and loads br_netfilter, so a root bridge could
# silently drop node-to-node traffic. One veth links the root namespace to the hub, so the host reaches every
# node (10.77.0.1 -> 10.77.0.1K). `up` prints `export` lines (also written to $STUDIO_SWARM_DIR/env).
#
# It never touches the machine's own dockerd (/var/run/docker.sock; `load` only reads images from it), its
# swarm mode or /etc/docker/daemon.json: every node dockerd gets its own --config-file. Only one cluster per
# machine (the names are fixed). Must run as root.
set -euo pipefail

DIR=${STUDIO_SWARM_DIR:-/run/studio-swarm}
DATA=${STUDIO_SWARM_DATA:-/var/lib/studio-swarm}
NET=10.77.0  # the hub's /24: the root namespace is .1, node K is .(10+K)
HUB=studio-swarm-hub
ROOT_IF=ssw-root  # the root namespace's end of the veth into the hub (interface names stay under 15 bytes)
READY_TIMEOUT=${STUDIO_SWARM_READY_TIMEOUT:-60}
export PATH=$PATH:/usr/sbin:/sbin

log() { printf '[netns-swarm] %s\n' "$*" >&2; }
die() {
  printf '[netns-swarm] error: %s\n' "$*" >&2
  exit 1
}

node_ns() { echo "studio-swarm-$1"; }
node_dir() { echo "$DIR/n$1"; }
node_sock() { echo "$DIR/n$1/docker.sock"; }
node_ip() { echo "$NET.$((10 + $1))"; }
# The docker CLI against one node, bounded so a wedged daemon cannot hang up/down/status.
ndocker() {
  local k=$1
  shift
  timeout 30 docker -H "unix://$(node_sock "$k")" "$@"
}

require_root() {
  [ "$(id -u)" = 0 ] || die "must run as root (it creates network namespaces and starts dockerd): sudo $0 $*"
  local tool
  for tool in ip nsenter unshare dockerd docker timeout setsid; do
    command -v "$tool" >/dev/null || die "$tool not found: apt-get install docker.io iproute2 util-linux coreutils"
  done
}

# Every node number that anything of ours still exists for: namespaces, runtime dirs, cgroups, and with
# --with-data data roots (kept data alone does not make a cluster: `up` reuses it).
known_nodes() {
  {
    ip netns list 2>/dev/null | awk '{ print $1 }' | sed -n 's/^studio-swarm-\([0-9][0-9]*\)$/\1/p'
    for d in "$DIR"/n[0-9]*; do if [ -d "$d" ]; then echo "${d##*/n}"; fi; done
    if [ "${1:-}" = --with-data ]; then
      for d in "$DATA"/node[0-9]*; do if [ -d "$d" ]; then echo "${d##*/node}"; fi; done
    fi
    for d in /sys/fs/cgroup/*/studio-swarm-[0-9]*; do if [ -d "$d" ]; then echo "${d##*-}"; fi; done
  } | sort -nu
}

# Processes of node K: everything in its network namespace (dockerd, containerd, shims, docker-proxy) and in
# its cgroup parent (the containers, which live in namespaces of their own).
node_pids() {
  local k=$1 ns
  ns=$(node_ns "$k")
  if [ -e "/var/run/netns/$ns" ]; then ip netns pids "$ns" 2>/dev/null || true; fi
  local d
  for d in /sys/fs/cgroup/*/"$ns"; do
    if [ -d "$d" ]; then find "$d" -name cgroup.procs -exec cat {} + 2>/dev/null || true; fi
  done
}

# Unmounts everything mounted below a path, deepest first (lazily when busy: the processes are gone by now).
unmount_below() {
  local prefix=$1 m
  awk -v p="$prefix" '$5 == p || index($5, p "/") == 1 { print $5 }' /proc/self/mountinfo | sort -r |
    while read -r m; do
      umount "$m" 2>/dev/null || umount -l "$m" 2>/dev/null || true
    done
}

# shellcheck disable=SC2120 # called with no arguments by up_failed, with the user's by the dispatcher
cmd_down() {
  local keep=0
  case "${1:-}" in
  --keep-data) keep=1 ;;
  '') ;;
  *) die "unknown option for down: $1 (only --keep-data)" ;;
  esac
  local nodes k pid
  nodes=$(known_nodes --with-data)
  # Kept data must not remember a swarm whose addresses and peers are gone: leave first (workers, then manager).
  if [ "$keep" = 1 ]; then
    for k in $(echo "$nodes" | sort -rn); do
      if [ -S "$(node_sock "$k")" ]; then ndocker "$k" swarm leave --force >/dev/null 2>&1 || true; fi
    done
  fi
  # SIGTERM lets each dockerd stop its containers and its containerd and unmount its layers.
  for k in $nodes; do
    pid=$(cat "$(node_dir "$k")/docker.pid" 2>/dev/null || true)
    # Only a dockerd inside our namespace: a stale pidfile may name an unrelated process by now.
    if [ -n "$pid" ] && node_pids "$k" | grep -qx "$pid"; then kill -TERM "$pid" 2>/dev/null || true; fi
  done
  local left
  for _ in $(seq 1 60); do
    left=0
    for k in $nodes; do
      pid=$(cat "$(node_dir "$k")/docker.pid" 2>/dev/null || true)
      if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null && node_pids "$k" | grep -qx "$pid"; then left=1; fi
    done
    [ "$left" = 0 ] && break
    sleep 0.25
  done
  # Whatever is left (a dockerd that hung, or containers and shims after a half-failed up) is killed.
  for _ in 1 2 3; do
    left=0
    for k in $nodes; do
      for pid in $(node_pids "$k"); do
        if kill -KILL "$pid" 2>/dev/null; then left=1; fi
      done
    done
    [ "$left" = 0 ] && break
    sleep 0.2
  done
  for k in $nodes; do
    unmount_below "$DATA/node$k"
    unmount_below "$(node_dir "$k")"
    ip netns del "$(node_ns "$k")" 2>/dev/null || true
    local d
    # Child cgroups (one per container) go before their parent.
    for d in /sys/fs/cgroup/*/"$(node_ns "$k")"; do
      if [ -d "$d" ]; then find "$d" -depth -type d -exec rmdir {} + 2>/dev/null || true; fi
    done
  done
  # Deleting the hub namespace deletes its bridge and the hub ends of every veth (and so the root end too).
  ip netns del "$HUB" 2>/dev/null || true
  ip link del "$ROOT_IF" 2>/dev/null || true
  unmount_below "$DIR"
  rm -rf --one-file-system "$DIR"
  if [ "$keep" = 0 ]; then
    unmount_below "$DATA"
    rm -rf --one-file-system "$DATA"
  fi
}

# The hub namespace with its bridge, and the veth from the root namespace into it.
make_hub() {
  ip netns add "$HUB"
  ip -n "$HUB" link set lo up
  ip -n "$HUB" link add br0 type bridge
  ip -n "$HUB" link set br0 up
  ip link add "$ROOT_IF" type veth peer name root netns "$HUB"
  ip -n "$HUB" link set root master br0 up
  ip addr add "$NET.1/24" dev "$ROOT_IF"
  ip link set "$ROOT_IF" up
}

make_node() {
  local k=$1 ns
  ns=$(node_ns "$k")
  ip netns add "$ns"
  ip -n "$ns" link set lo up
  ip -n "$HUB" link add "n$k" type veth peer name eth0 netns "$ns"
  ip -n "$HUB" link set "n$k" master br0 up
  ip -n "$ns" addr add "$(node_ip "$k")/24" dev eth0
  ip -n "$ns" link set eth0 up
}

# One node's dockerd, detached from the caller (its own session, output to its log).
start_dockerd() {
  local k=$1 dir ns
  dir=$(node_dir "$k")
  ns=$(node_ns "$k")
  mkdir -p "$dir" "$DATA/node$k"
  # Its own daemon.json, so the host's /etc/docker/daemon.json never applies; runsc when it is installed.
  # gVisor's own networking fails in this VM ("cannot run with network enabled in root network namespace",
  # even with Docker's --network none), so runsc containers get no network at all, as sandboxes should.
  if command -v runsc >/dev/null; then
    printf '{ "runtimes": { "runsc": { "path": "%s", "runtimeArgs": ["--network=none"] } } }\n' \
      "$(command -v runsc)" >"$dir/daemon.json"
  else
    echo '{}' >"$dir/daemon.json"
  fi
  # nsenter, not `ip netns exec`: the latter also remounts /sys in a new mount namespace, and dockerd then
  # fails with "Devices cgroup isn't mounted". A UTS namespace of its own gives the node its own hostname.
  # The cgroup parent keeps each node's containers apart (and lets `down` find them); --bip differs per node;
  # a throwaway node need not give its containers the default 15 s to stop when `down` stops it.
  # shellcheck disable=SC2016 # $1 and $@ belong to the inner sh
  setsid nsenter --net="/var/run/netns/$ns" unshare --uts \
    sh -c 'hostname "$1" && shift && exec "$@"' sh "$ns" \
    dockerd --config-file "$dir/daemon.json" \
    --data-root "$DATA/node$k" --exec-root "$dir/x" \
    -H "unix://$dir/docker.sock" --pidfile "$dir/docker.pid" \
    --bip "10.78.$k.1/24" --cgroup-parent "/$ns" --shutdown-timeout 3 \
    >"$dir/dockerd.log" 2>&1 </dev/null &
}

# Prints the last lines of every node's dockerd log: what `up` shows before it cleans up after a failure.
show_logs() {
  local k
  for k in $(known_nodes); do
    [ -f "$(node_dir "$k")/dockerd.log" ] || continue
    printf -- '--- %s dockerd.log (last errors)\n' "$(node_ns "$k")" >&2
    # Errors, fatals and lines that are not logrus's (a panic, a bad flag); the kernel-parameter and IPVS
    # errors are expected on this kernel and say nothing about the failure.
    grep -vE 'gc_thresh|/proc/sys/net/ipv4/vs/' "$(node_dir "$k")/dockerd.log" |
      grep -E 'level=(error|fatal)|^[^t]' | tail -n 5 >&2 || true
  done
}

UP_DONE=0
up_failed() {
  [ "$UP_DONE" = 1 ] && return
  show_logs
  log "up failed: removing what it made"
  # shellcheck disable=SC2119 # a plain down: the data roots of a failed up are worth nothing
  cmd_down >/dev/null 2>&1 || true
}

cmd_up() {
  local n=${1:-3}
  if ! [[ $n =~ ^[1-9][0-9]*$ ]] || [ "$n" -gt 50 ]; then die "up takes a node count from 1 to 50, not '$n'"; fi
  # Unix socket paths are limited to 108 bytes (containerd refuses over 104); the deepest one dockerd makes
  # below the runtime dir is about 45 bytes long.
  [ "${#DIR}" -le 50 ] || die "STUDIO_SWARM_DIR is too long (${#DIR} bytes, at most 50): unix socket paths under it would pass 104 bytes"
  if [ -n "$(known_nodes)" ] || [ -e "/var/run/netns/$HUB" ] || ip link show "$ROOT_IF" >/dev/null 2>&1; then
    die "a studio swarm (or what is left of one) exists already: run $0 down first"
  fi
  if ip -4 addr show | grep -q "inet $NET\."; then
    die "$NET.0/24 is already used on this machine: the hub network needs it free"
  fi
  local t0=$SECONDS k
  trap up_failed EXIT
  trap 'exit 130' INT TERM
  mkdir -p "$DIR" "$DATA"
  chmod 700 "$DIR" "$DATA"
  make_hub
  for k in $(seq 1 "$n"); do make_node "$k"; done
  for k in $(seq 1 "$n"); do start_dockerd "$k"; done

  # Each daemon answers within a few seconds; a dead one fails fast instead of waiting for the deadline.
  local deadline=$((SECONDS + READY_TIMEOUT)) pending
  while :; do
    pending=""
    for k in $(seq 1 "$n"); do
      ndocker "$k" version --format '{{.Server.Version}}' >/dev/null 2>&1 || pending="$pending $k"
    done
    [ -z "$pending" ] && break
    for k in $pending; do
      if [ -f "$(node_dir "$k")/docker.pid" ] && ! kill -0 "$(cat "$(node_dir "$k")/docker.pid")" 2>/dev/null; then
        die "the dockerd of $(node_ns "$k") exited (log: $(node_dir "$k")/dockerd.log, shown above)"
      fi
    done
    [ "$SECONDS" -lt "$deadline" ] || die "dockerd did not answer within ${READY_TIMEOUT} s on node(s):$pending (logs shown above)"
    sleep 0.3
  done

  # Kept data (down --keep-data) may still hold a swarm whose addresses and peers are gone.
  for k in $(seq 1 "$n"); do
    if [ "$(ndocker "$k" info --format '{{.Swarm.LocalNodeState}}')" != inactive ]; then
      ndocker "$k" swarm leave --force >/dev/null
    fi
  done
  ndocker 1 swarm init --advertise-addr "$(node_ip 1)" --listen-addr "$(node_ip 1):2377" >/dev/null
  local token
  token=$(ndocker 1 swarm join-token -q worker)
  local pids=()
  for k in $(seq 2 "$n"); do
    ndocker "$k" swarm join --token "$token" --advertise-addr "$(node_ip "$k")" \
      --listen-addr "$(node_ip "$k"):2377" "$(node_ip 1):2377" >/dev/null &
    pids+=($!)
  done
  for k in "${pids[@]}"; do wait "$k" || die "a worker could not join the swarm (logs shown above)"; done

  local ready
  while :; do
    ready=$(ndocker 1 node ls --format '{{.Status}}' 2>/dev/null | grep -c '^Ready$' || true)
    [ "$ready" = "$n" ] && break
    [ "$SECONDS" -lt "$deadline" ] || die "only $ready of $n nodes were Ready after ${READY_TIMEOUT} s (logs shown above)"
    sleep 0.5
  done

  write_env "$n"
  UP_DONE=1
  trap - EXIT INT TERM
  log "$n nodes Ready in $((SECONDS - t0)) s"
  cat "$DIR/env"
}

# What consumers need: `eval "$(netns-swarm.sh up)"` or `. $STUDIO_SWARM_DIR/env`.
write_env() {
  local n=$1 k
  {
    echo "export STUDIO_SWARM_DIR=$DIR"
    echo "export STUDIO_SWARM_NODES=$n"
    echo "export STUDIO_SWARM_HOST_IP=$NET.1"
    echo "export STUDIO_SWARM_MANAGER_SOCKET=$(node_sock 1)"
    for k in $(seq 1 "$n"); do
      echo "export STUDIO_SWARM_NODE${k}_SOCKET=$(node_sock "$k")"
      echo "export STUDIO_SWARM_NODE${k}_IP=$(node_ip "$k")"
    done
  } >"$DIR/env.tmp"
  mv "$DIR/env.tmp" "$DIR/env"
}

cmd_load() {
  [ $# -gt 0 ] || die "load needs at least one image: $0 load IMAGE..."
  local nodes k tmp
  nodes=$(known_nodes)
  [ -n "$nodes" ] || die "no studio swarm is up: run $0 up first"
  tmp=$(mktemp "${TMPDIR:-/tmp}/studio-swarm-images.XXXXXX")
  # shellcheck disable=SC2064 # the path is fixed now, on purpose
  trap "rm -f '$tmp'" EXIT
  # The host's dockerd is only read from here.
  docker save -o "$tmp" "$@" || die "docker save $* failed on the host's dockerd: is every image there (docker image ls)?"
  local pids=() failed=0
  for k in $nodes; do
    ndocker "$k" load -q -i "$tmp" >/dev/null &
    pids+=($!)
  done
  for k in "${pids[@]}"; do wait "$k" || failed=1; done
  [ "$failed" = 0 ] || die "docker load failed on a node: see $0 status"
}

cmd_status() {
  local nodes k state ready pid
  nodes=$(known_nodes)
  [ -n "$nodes" ] || {
    echo "no studio swarm"
    return 0
  }
  for k in $nodes; do
    pid=$(cat "$(node_dir "$k")/docker.pid" 2>/dev/null || true)
    if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; then
      state=$(ndocker "$k" info --format '{{.Swarm.LocalNodeState}} {{if .Swarm.ControlAvailable}}manager{{else}}worker{{end}} {{.Swarm.NodeID}}' 2>/dev/null || echo "not-answering - -")
      read -r swarm role id <<<"$state"
      ready=$(ndocker 1 node inspect "$id" --format '{{.Status.State}} {{.Spec.Availability}}' 2>/dev/null || echo "- -")
      echo "$(node_ns "$k") ip=$(node_ip "$k") dockerd=$pid swarm=$swarm role=$role status=${ready% *} availability=${ready#* } socket=$(node_sock "$k")"
    else
      echo "$(node_ns "$k") ip=$(node_ip "$k") dockerd=stopped"
    fi
  done
}

case "${1:-}" in
up | down | load | status)
  cmd=$1
  shift
  require_root "$cmd"
  "cmd_$cmd" "$@"
  ;;
*)
  echo "usage: $0 up [N] | down [--keep-data] | load IMAGE... | status" >&2
  exit 2
  ;;
esac
