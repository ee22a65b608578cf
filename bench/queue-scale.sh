#!/usr/bin/env bash
# Queue scale benchmark: what the admin commands, a restart and the daemon's memory cost as the queue grows.
#
#   bench/queue-scale.sh [-s "10000 30000 100000"] [-l BYTES] [-n REPS] [-k]
#
# For each size in -s, the queue is filled (daemon stopped) to that many messages of BYTES (default 2048), each
# with one recipient deferred until tomorrow, written through the queue's own API by bench/queuefill (SMTP and
# a failing delivery would take far longer at 100,000). Then:
#   - restart: time from starting `ptrelay serve` to its SMTP port accepting, with the database in the page
#     cache (warm, median of REPS), after dropping the page cache (cold; needs root to write
#     /proc/sys/vm/drop_caches, else says so), and cold after a kill -9 instead of a stop;
#   - with the daemon running, each command REPS times (median): its time, the time to its first line of output,
#     the CPU time of the CLI (/usr/bin/time, user + system) and of the daemon during it (/proc/PID/stat: less
#     at the mercy of other load on the machine than the times), the CLI's peak RSS (/usr/bin/time), and the daemon's peak RSS (VmHWM, reset before each command through
#     /proc/PID/clear_refs), peak anonymous RSS (RssAnon, sampled every 100 ms: RSS without the pages of the
#     memory-mapped queue.db, which are page cache the kernel can drop) and peak Go heap in use (its /metrics
#     sampled every 100 ms); all in MiB;
#   - `queue retry -all` once (it makes everything due: the daemon then retries it all against a closed port),
#     and `queue list` offline (daemon stopped, the CLI opens the database itself).
# At the end the queue is emptied (`queue delete -all`), and the database file's size is shown before and after
# `ptrelay queue compact` (offline).
#
# ptrelay's smart host is a closed port and the retry schedule is 12 h, so nothing is delivered and nothing
# becomes due on its own. A command the build does not have prints n/a. -k keeps the work directory. Needs
# Go, python3 and /usr/bin/time; root only for the cold restart.
set -euo pipefail
source "$(dirname "$0")/lib.sh"

sizes="10000 30000 100000" bytes=2048 reps=3 keep=
while getopts s:l:n:k opt; do
	case $opt in
	s) sizes=$OPTARG ;;
	l) bytes=$OPTARG ;;
	n) reps=$OPTARG ;;
	k) keep=1 ;;
	*) awk 'NR > 1 && /^#/ { print; next } NR > 1 { exit }' "$0" >&2; exit 2 ;;
	esac
done
for p in go python3 /usr/bin/time; do command -v "$p" >/dev/null || die "needs $p"; done

WORK=$(mktemp -d /tmp/ptrelay-bench-queuescale.XXXXXX)
cleanup() {
	stop_ptrelay
	if [ -n "$keep" ]; then log "work directory kept: $WORK"; else rm -rf "$WORK"; fi
}
trap cleanup EXIT
build_ptrelay "$WORK"
(cd "$REPO_DIR" && go build -o "$WORK/bin/queuefill" ./bench/queuefill) || die "go build ./bench/queuefill failed"

listen=127.0.0.6:$(free_port 127.0.0.6)
mport=$(free_port 127.0.0.1)
metrics=http://127.0.0.1:$mport/metrics
conf=$WORK/ptrelay.toml
data=$WORK/data
cat >"$conf" <<CF
hostname = "ptrelay.bench.test"
data_dir = "$data"

[smtp]
listen = ["$listen"]
allowed_networks = ["127.0.0.0/8"]

[[smarthosts]]
name = "none"
address = "127.0.0.1:9"
tls = "none"

[routing]
mode = "smarthost"
reroute = false

[queue]
retry_min = "12h"
retry_max = "24h"
delay_warning = "0s"

[dns]
resolvers = ["127.0.0.1:9"]
timeout = "1s"

[egress]
ip = "192.0.2.10"
whoami = ["127.0.0.1:9"]
dnsbl = []
port25_probe = "127.0.0.1:9"

[admin]
socket = "$WORK/admin.sock"
metrics_listen = "127.0.0.1:$mport"
CF
mkdir -p "$data"

can_drop=
if [ "$(id -u)" -eq 0 ] && sync && echo 3 >/proc/sys/vm/drop_caches 2>/dev/null; then can_drop=1; fi

# start: runs the daemon; sets STARTED to the seconds from start to its SMTP port accepting.
start() {
	local t0 t1
	t0=$($MEASURE now)
	"$PTRELAY_BIN" serve -config "$conf" >>"$WORK/ptrelay.log" 2>&1 &
	PTRELAY_PID=$!
	t1=$($MEASURE wait-port "${listen%:*}" "${listen##*:}" 300) || { tail -20 "$WORK/ptrelay.log" >&2; die "ptrelay did not start"; }
	STARTED=$(python3 -c "print(f'{$t1 - $t0:.3f}')")
}

# stop: SIGTERM, and wait for the daemon to be gone (it drains its deliveries first).
stop() {
	[ -n "${PTRELAY_PID:-}" ] || return 0
	kill "$PTRELAY_PID" 2>/dev/null || true
	wait "$PTRELAY_PID" 2>/dev/null || true
	PTRELAY_PID=
}

mib() { python3 -c "import sys; print(f'{float(sys.argv[1]) / (1 << 20):.0f}')" "$1"; }
dbsize() { mib "$(stat -c %s "$data/queue.db")"; }
has() { # VERB ARGS...: does this build know the command? (a usage error exits 2)
	local rc=0
	"$PTRELAY_BIN" "$@" -config "$conf" >/dev/null 2>&1 || rc=$?
	[ "$rc" -ne 2 ]
}

# measure NAME ARGS...: runs `ptrelay ARGS -config CONF` REPS times against the running daemon; prints one
# table row of medians.
measure() {
	local name=$1
	shift
	local i times=() firsts=() clis=() rss=() anon=() heap=() ccpu=() dcpu=() out d0 d1
	for i in $(seq "$reps"); do
		echo 5 >"/proc/$PTRELAY_PID/clear_refs"
		rm -f "$WORK/heap" "$WORK/anon"
		$MEASURE peak-metric "$metrics" go_memstats_heap_inuse_bytes "$WORK/heap" &
		local sampler=$!
		$MEASURE peak-proc "$PTRELAY_PID" RssAnon "$WORK/anon" &
		local anon_sampler=$!
		local w
		for w in $(seq 100); do [ -s "$WORK/heap" ] && [ -s "$WORK/anon" ] && break; sleep 0.05; done
		d0=$($MEASURE cpu "$PTRELAY_PID")
		out=$(/usr/bin/time -f "%e %M %U %S" -o "$WORK/time" "$PTRELAY_BIN" "$@" -config "$conf" 2>&1 >/dev/null) ||
			log "$name: exit status $?: $(echo "$out" | head -2)"
		d1=$($MEASURE cpu "$PTRELAY_PID")
		sleep 0.2
		kill "$sampler" "$anon_sampler" && wait "$sampler" "$anon_sampler" 2>/dev/null || true
		read -r t m u s <"$WORK/time"
		times+=("$t")
		ccpu+=("$(python3 -c "print(f'{$u + $s:.2f}')")")
		dcpu+=("$(python3 -c "print(f'{$d1 - $d0:.2f}')")")
		clis+=("$((m / 1024))")
		rss+=("$(($(awk '/VmHWM/ { print $2 }' "/proc/$PTRELAY_PID/status") / 1024))")
		anon+=("$(($(cat "$WORK/anon") / 1024))")
		heap+=("$(mib "$(cat "$WORK/heap")")")
		firsts+=("$($MEASURE first-line "$PTRELAY_BIN" "$@" -config "$conf" | cut -d' ' -f1)")
	done
	printf "  %-30s %6s %6s %6s %6s %6s %8s %8s %8s\n" "$name" "$($MEASURE median "${times[@]}")" \
		"$($MEASURE median "${firsts[@]}")" "$($MEASURE median "${ccpu[@]}")" "$($MEASURE median "${dcpu[@]}")" \
		"$($MEASURE median "${clis[@]}")" \
		"$($MEASURE median "${rss[@]}")" "$($MEASURE median "${anon[@]}")" "$($MEASURE median "${heap[@]}")"
}

header() {
	printf "  %-30s %6s %6s %6s %6s %6s %8s %8s %8s\n" command "time" "1st" "CLI" "daemon" "CLI" "daemon" "daemon" "daemon"
	printf "  %-30s %6s %6s %6s %6s %6s %8s %8s %8s\n" "" "s" "line s" "CPU s" "CPU s" "RSS" "RSS pk" "anon pk" "heap pk"
}

echo "# queue-scale: $bytes-byte messages; $(nproc) CPUs; $(date -u +%Y-%m-%dT%H:%MZ); $(git -C "$REPO_DIR" log -1 --format='%h %s')"
[ -n "$can_drop" ] || echo "# cold restarts not measured: dropping the page cache needs root (/proc/sys/vm/drop_caches)"
for n in $sizes; do
	t0=$($MEASURE now)
	"$WORK/bin/queuefill" -dir "$data" -count "$n" -size "$bytes" || die "queuefill failed"
	t1=$($MEASURE now)
	echo
	echo "## $n messages (filled in $(python3 -c "print(f'{$t1 - $t0:.0f}')") s; queue.db $(dbsize) MiB)"
	warm=()
	start # the first start after the fill also settles what the fill left
	stop
	for i in $(seq "$reps"); do
		start
		warm+=("$STARTED")
		stop
	done
	cold=n/a crashed=n/a
	sync
	if [ -n "$can_drop" ]; then echo 3 >/proc/sys/vm/drop_caches; fi
	start
	[ -z "$can_drop" ] || cold=$STARTED
	# A crash instead of a stop: kill -9, then a start from a cold page cache.
	kill -9 "$PTRELAY_PID"
	wait "$PTRELAY_PID" 2>/dev/null || true
	sync
	if [ -n "$can_drop" ]; then echo 3 >/proc/sys/vm/drop_caches; fi
	start
	[ -z "$can_drop" ] || crashed=$STARTED
	echo "  restart: warm $($MEASURE median "${warm[@]}") s (median of $reps), cold $cold s, cold after kill -9 $crashed s"
	echo "  daemon at rest: RSS $(($(awk '/VmRSS/ { print $2 }' "/proc/$PTRELAY_PID/status") / 1024)) MiB (anonymous $(($(awk '/RssAnon/ { print $2 }' "/proc/$PTRELAY_PID/status") / 1024)) MiB), heap $(mib "$($MEASURE metric "$metrics" go_memstats_heap_inuse_bytes)") MiB"
	header
	measure "status" status
	measure "queue list" queue list
	measure "queue list -json" queue list -json
	if has queue list -limit 1; then
		measure "queue list -limit 100" queue list -limit 100
		measure "queue list -domain d7.example" queue list -domain d7.example
	else
		echo "  queue list -limit/-domain     n/a"
	fi
	r0=$($MEASURE now)
	"$PTRELAY_BIN" queue retry -all -config "$conf" >/dev/null
	r1=$($MEASURE now)
	echo "  queue retry -all: $(python3 -c "print(f'{$r1 - $r0:.2f}')") s (once; the daemon then retries everything)"
	stop
	o=$($MEASURE first-line "$PTRELAY_BIN" queue list -config "$conf")
	echo "  queue list offline: first line ${o% *} s, all ${o#* } s"
done

echo
echo "## drained"
"$WORK/bin/queuefill" -dir "$data" -count 0 || die "queuefill failed"
start
d0=$($MEASURE now)
"$PTRELAY_BIN" queue delete -all -config "$conf" >/dev/null
d1=$($MEASURE now)
stop
echo "  queue delete -all: $(python3 -c "print(f'{$d1 - $d0:.2f}')") s; queue.db $(dbsize) MiB when empty"
if [[ $("$PTRELAY_BIN" queue 2>&1) == *compact* ]]; then
	c0=$($MEASURE now)
	"$PTRELAY_BIN" queue compact -config "$conf"
	c1=$($MEASURE now)
	echo "  queue compact: $(python3 -c "print(f'{$c1 - $c0:.2f}')") s; queue.db $(dbsize) MiB after"
else
	echo "  queue compact: n/a"
fi
