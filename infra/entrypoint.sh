#!/bin/sh
# Container entrypoint: make the data directory writable by the runtime user, then run
# staylinked as that user (UID/GID 10001), never as root.
#
# Railway (and some other platforms) mount volumes root-owned over /var/lib/staylinked/data;
# a process started directly as UID 10001 could not open the embedded store there. Started as
# root, this script fixes the ownership once and drops privileges with setpriv. Started as
# non-root (the image default USER 10001: Docker, Cloud Run), it just execs.
set -eu
DATA=/var/lib/staylinked/data
if [ "$(id -u)" = "0" ]; then
  mkdir -p "$DATA"
  if [ "$(stat -c %u "$DATA")" != "10001" ]; then
    chown -R 10001:10001 "$DATA"
  fi
  exec setpriv --reuid=10001 --regid=10001 --clear-groups --inh-caps=-all -- /usr/local/bin/staylinked "$@"
fi
if [ -d "$DATA" ] && [ ! -w "$DATA" ]; then
  echo "staylinked-entrypoint: $DATA is not writable by UID $(id -u); the embedded store cannot open." >&2
  echo "  On Railway set RAILWAY_RUN_UID=0: this entrypoint then fixes the ownership and drops to UID 10001." >&2
fi
exec /usr/local/bin/staylinked "$@"
