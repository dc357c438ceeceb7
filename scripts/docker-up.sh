#!/usr/bin/env bash
# Make a Docker engine answer on this machine, idempotently and without prompts.
#
# - installs Debian's docker.io and debootstrap when they are missing (root, apt);
# - starts /usr/sbin/dockerd in the background (log: $SHIPYARD_DOCKERD_LOG,
#   default /var/log/shipyard-dockerd.log) when `docker info` does not answer;
# - waits until it answers, at most $SHIPYARD_DOCKER_TIMEOUT seconds (default 60).
#
# Debian's client at /usr/bin/docker is preferred: a newer client earlier on
# PATH may lack buildx, which makes BuildKit builds fail.
set -euo pipefail

export DEBIAN_FRONTEND=noninteractive
LOG="${SHIPYARD_DOCKERD_LOG:-/var/log/shipyard-dockerd.log}"
TIMEOUT="${SHIPYARD_DOCKER_TIMEOUT:-60}"

say() { printf 'docker-up: %s\n' "$*" >&2; }

docker_cli() {
    if [ -x /usr/bin/docker ]; then echo /usr/bin/docker; else command -v docker || true; fi
}

answers() {
    local cli
    cli="$(docker_cli)"
    [ -n "$cli" ] && "$cli" info >/dev/null 2>&1
}

if answers; then
    say "Docker already answers."
else
    missing=()
    [ -x /usr/sbin/dockerd ] || missing+=(docker.io)
    command -v debootstrap >/dev/null 2>&1 || [ -x /usr/sbin/debootstrap ] || missing+=(debootstrap)
    if [ "${#missing[@]}" -gt 0 ]; then
        if [ "$(id -u)" -ne 0 ]; then
            say "need root to install ${missing[*]}; run: sudo $0"
            exit 1
        fi
        say "installing ${missing[*]} with apt"
        apt-get update -q >/dev/null
        apt-get install -y -q --no-install-recommends "${missing[@]}" >/dev/null
    fi
    if [ "$(id -u)" -ne 0 ]; then
        say "need root to start dockerd; run: sudo $0"
        exit 1
    fi
    say "starting dockerd (log: $LOG)"
    mkdir -p "$(dirname "$LOG")"
    nohup /usr/sbin/dockerd --storage-driver=overlay2 >>"$LOG" 2>&1 </dev/null &
    deadline=$(( $(date +%s) + TIMEOUT ))
    until answers; do
        if [ "$(date +%s)" -ge "$deadline" ]; then
            say "dockerd did not answer within ${TIMEOUT}s; last lines of $LOG:"
            tail -n 20 "$LOG" >&2 || true
            exit 1
        fi
        sleep 0.5
    done
    say "Docker answers."
fi

# debootstrap is needed for `shipyard base-image build` even when Docker already ran.
if ! command -v debootstrap >/dev/null 2>&1 && [ ! -x /usr/sbin/debootstrap ]; then
    if [ "$(id -u)" -eq 0 ]; then
        say "installing debootstrap with apt"
        apt-get update -q >/dev/null
        apt-get install -y -q --no-install-recommends debootstrap >/dev/null
    else
        say "debootstrap is missing; run: sudo apt-get install debootstrap"
    fi
fi
