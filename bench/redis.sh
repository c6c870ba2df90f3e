#!/bin/sh
# redis: a redis-server on 127.0.0.1 under redis-benchmark, for `make bench`.
#
#   bench/redis.sh [REQUESTS]
#
# The server inherits this script's LD_PRELOAD (the allocator being
# measured); redis-benchmark runs without it, so the client costs the same
# under both columns. The wall time covers start-up, the benchmark and a
# clean shutdown; the driver's peak RSS is the server's (the largest of the
# processes it waited for). Loopback only, a bounded number of requests.
set -u
requests=${1:-50000}
dir=$(mktemp -d "${TMPDIR:-/tmp}/labbench-redis.XXXXXX") || exit 1
trap 'rm -rf "$dir"' EXIT
for try in 1 2 3 4 5 6 7 8; do
	port=$((20000 + $$ % 20000 + try * 97))
	redis-server --port "$port" --bind 127.0.0.1 --save '' --appendonly no \
		--dir "$dir" --daemonize no >"$dir/log" 2>&1 &
	pid=$!
	i=0
	while [ $i -lt 100 ]; do
		if env -u LD_PRELOAD redis-cli -h 127.0.0.1 -p "$port" PING 2>/dev/null | grep -q PONG; then
			break
		fi
		kill -0 "$pid" 2>/dev/null || break
		sleep 0.05
		i=$((i + 1))
	done
	if kill -0 "$pid" 2>/dev/null && [ $i -lt 100 ]; then
		env -u LD_PRELOAD redis-benchmark -h 127.0.0.1 -p "$port" -q -n "$requests" \
			-c 20 -r 100000 -d 100 -t set,get,lpush,lpop,hset >/dev/null 2>&1
		rc=$?
		kill -TERM "$pid"
		wait "$pid" || rc=1
		exit $rc
	fi
	kill "$pid" 2>/dev/null
	wait "$pid" 2>/dev/null
done
echo "redis.sh: no redis-server came up" >&2
cat "$dir/log" >&2
exit 1
