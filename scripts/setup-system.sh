#!/usr/bin/env bash
# Installs the system packages the test suite needs, when they are missing, and
# starts the services it uses. Idempotent; needs root for apt (skipped otherwise
# with a message saying what is missing).
set -euo pipefail
cd "$(dirname "$0")/.."

need=()
command -v git >/dev/null 2>&1 || need+=(git)
[[ -x /usr/bin/docker-registry ]] || need+=(docker-registry)   # local OCI registry for push tests
[[ -x /usr/bin/chromium ]] || need+=(chromium)                 # real-browser tests of the panel (Playwright)
[[ -x /usr/bin/prometheus ]] || need+=(prometheus)             # real Prometheus (and promtool) for alerting tests
[[ -x /usr/bin/podman ]] || need+=(podman)                     # `shipyard deploy local`: podman kube play
[[ -x /usr/bin/catatonit ]] || need+=(catatonit)               # the init of podman's pods
compgen -G '/usr/lib/postgresql/*/bin/initdb' >/dev/null || need+=(postgresql)  # a team tracking server's database

if ((${#need[@]})); then
  if [[ $(id -u) -ne 0 ]]; then
    echo "setup-system: missing ${need[*]}; install them (as root: apt-get install ${need[*]})" >&2
    exit 1
  fi
  echo "setup-system: installing ${need[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi

# Podman sets each container's rlimits to its defaults (nofile/nproc 1048576); where root may not raise limits
# (no CAP_SYS_RESOURCE, e.g. inside a container) that fails with "error setting rlimit type 7". Ask for what
# this machine allows instead: the hard nofile limit, and nproc no higher than podman's own (kernel.pid_max).
conf=/etc/containers/containers.conf
if [[ $(id -u) -eq 0 ]] && ! grep -qs '^default_ulimits' "$conf"; then
  nofile=$(ulimit -Hn)
  nproc=$(ulimit -Hu)
  pid_max=$(cat /proc/sys/kernel/pid_max)
  [[ $nproc == unlimited || $nproc -gt $pid_max ]] && nproc=$pid_max
  [[ $nofile == unlimited ]] && nofile=1048576
  mkdir -p /etc/containers
  if grep -qs '^\[containers\]' "$conf"; then
    sed -i "/^\[containers\]/a default_ulimits = [\"nofile=$nofile:$nofile\", \"nproc=$nproc:$nproc\"]" "$conf"
  else
    printf '[containers]\ndefault_ulimits = ["nofile=%s:%s", "nproc=%s:%s"]\n' "$nofile" "$nofile" "$nproc" "$nproc" >>"$conf"
  fi
  echo "setup-system: podman default_ulimits nofile=$nofile nproc=$nproc in $conf"
fi

if [[ -f scripts/docker-up.sh ]]; then
  bash scripts/docker-up.sh
fi
