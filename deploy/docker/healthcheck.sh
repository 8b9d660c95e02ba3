#!/bin/bash
# Container health check for every arlas role: GET $ARLAS_HEALTH_URL (default
# http://127.0.0.1:9090/healthz, the role's --metrics-listen port) and succeed on HTTP 200.
# Plain bash (/dev/tcp) so the runtime image needs no curl. Exit 0 healthy, 1 unhealthy.
set -u
url="${ARLAS_HEALTH_URL:-http://127.0.0.1:9090/healthz}"
rest="${url#http://}"
if [ "$rest" = "$url" ]; then
  echo "arlas-healthcheck: ARLAS_HEALTH_URL must start with http:// (got '$url')" >&2
  exit 1
fi
hostport="${rest%%/*}"
path="/"
if [ "$hostport" != "$rest" ]; then path="/${rest#*/}"; fi
host="${hostport%:*}"
port="${hostport##*:}"
if [ "$host" = "$hostport" ]; then port=80; fi

# The connect and the read are bounded so a wedged process reads as unhealthy, not as a hang.
# The inner script is single-quoted on purpose: it gets host, port and path as $1..$3.
# shellcheck disable=SC2016
status_line="$(timeout "${ARLAS_HEALTH_TIMEOUT:-4}" bash -c '
  exec 3<>"/dev/tcp/$1/$2" || exit 1
  printf "GET %s HTTP/1.0\r\nHost: %s\r\nConnection: close\r\n\r\n" "$3" "$1" >&3
  IFS= read -r line <&3 && printf "%s" "$line"
' _ "$host" "$port" "$path" 2>/dev/null)"
case "$status_line" in
  "HTTP/1."?" 200"*) exit 0 ;;
  "") echo "arlas-healthcheck: no answer from $url" >&2; exit 1 ;;
  *) echo "arlas-healthcheck: $url answered '${status_line%$'\r'}'" >&2; exit 1 ;;
esac
