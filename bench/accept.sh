#!/usr/bin/env bash
# Accept benchmark: how fast ptrelay and Postfix take mail (every message has had its 250, i.e. is durable),
# and what that costs in CPU, by the method of bench/README.md.
#
#   bench/accept.sh [-n REPS] [-m MESSAGES] [-l BYTES] [-c "20 1"] [-r "ptrelay postfix"] [-b BIN] [-D] [-k]
#
# For each concurrency in -c (default 20 then 1) and each repetition (default 5), runs
# `smtp-source -s C -m N -l BYTES` against ptrelay, then against Postfix (interleaved), and prints per run the
# accept rate (N / time until smtp-source is done), CPU per message of the relay's process tree
# (/proc/PID/stat utime+stime, children included) and its peak PSS; then the medians and ptrelay/Postfix ratios.
#
# Delivery: Postfix relays to an smtp-sink (as in the baseline); ptrelay's smart host is a closed port, so its mail
# stays queued (one refused connection per attempt, then the 5-minute backoff); with -D ptrelay delivers to the
# sink too, which makes the CPU figures comparable. ptrelay starts with an empty data_dir for every run. -b BIN
# runs the ptrelay binary BIN too, as "baseline", interleaved with the others, and compares it with the build
# (a before/after measurement of a change under the same load). -k keeps the work directory. Needs root, Go,
# and the peers of scripts/install-peers.
set -euo pipefail
source "$(dirname "$0")/lib.sh"

reps=5 msgs=5000 size=4096 concs="20 1" keep= relays="ptrelay postfix" deliver= baseline=
while getopts n:m:l:c:r:b:Dk opt; do
	case $opt in
	n) reps=$OPTARG ;;
	m) msgs=$OPTARG ;;
	l) size=$OPTARG ;;
	c) concs=$OPTARG ;;
	r) relays=$OPTARG ;;
	b) baseline=$OPTARG ;;
	D) deliver=1 ;;
	k) keep=1 ;;
	*) awk 'NR > 1 && /^#/ { print; next } NR > 1 { exit }' "$0" >&2; exit 2 ;;
	esac
done
bench_setup accept
dead=127.0.0.1:9
[ -n "$deliver" ] && dead=$SINK_ADDR
results="$WORK/results"
: >"$results"

run() { # RELAY C REP
	local relay=$1 c=$2 rep=$3 pid addr
	if [ "$relay" != postfix ]; then
		start_relay "$relay" "$WORK/ptrelay" "$pt_listen" "$dead"
		pid=$PTRELAY_PID addr=$pt_listen
	else
		# The previous run's mail must be gone, or its delivery would load this run.
		local i
		for i in $(seq 600); do [ "$(postfix_queue_size "$WORK/postfix")" -eq 0 ] && break; sleep 0.5; done
		pid=$POSTFIX_PID addr=$pf_listen
	fi
	start_pss_sampler "$pid" "$WORK/pss"
	local cpu0 t0 t1 cpu1 out
	cpu0=$($MEASURE cpu "$pid")
	t0=$($MEASURE now)
	if ! out=$(smtp-source -s "$c" -m "$msgs" -l "$size" -f "$FROM" -t "$TO" "$addr" 2>&1); then
		die "smtp-source against $relay failed: $out"
	fi
	t1=$($MEASURE now)
	cpu1=$($MEASURE cpu "$pid")
	stop_pss_sampler
	[ -z "$out" ] || log "smtp-source said: $(echo "$out" | head -3)"
	local rate cpu_ms pss
	rate=$(python3 -c "print(f'{$msgs/($t1-$t0):.1f}')")
	cpu_ms=$(python3 -c "print(f'{($cpu1-$cpu0)*1000/$msgs:.3f}')")
	pss=$(( $(cat "$WORK/pss" 2>/dev/null || echo 0) / 1024 ))
	printf '%-8s C=%-3s rep %s  accept %8s msg/s  cpu %7s ms/msg  peak PSS %4s MiB\n' \
		"$relay" "$c" "$rep" "$rate" "$cpu_ms" "$pss"
	echo "$relay $c $rate $cpu_ms $pss" >>"$results"
	[ "$relay" != postfix ] && stop_ptrelay
	return 0
}

echo "accept benchmark: N=$msgs, $size bytes, C in {$concs}, $reps repetitions, $(nproc) CPUs, $(date -u +%FT%TZ)"
for c in $concs; do
	for rep in $(seq "$reps"); do
		for relay in $(run_order "$relays" "$rep"); do run "$relay" "$c" "$rep"; done
	done
done

echo
echo "medians (ratio = ptrelay / Postfix; for CPU lower is better):"
for c in $concs; do
	med() { $MEASURE median $(awk -v r="$1" -v c="$c" -v f="$2" '$1 == r && $2 == c { print $f }' "$results"); }
	pr=$(med ptrelay 3) fr=$(med postfix 3) pc=$(med ptrelay 4) fc=$(med postfix 4) pp=$(med ptrelay 5) fp=$(med postfix 5)
	printf 'C=%-3s accept msg/s: ptrelay %s, Postfix %s, ratio %s | CPU ms/msg: ptrelay %s, Postfix %s, ratio %s | peak PSS MiB: %s vs %s\n' \
		"$c" "$pr" "$fr" "$(ratio "$pr" "$fr")" "$pc" "$fc" "$(ratio "$pc" "$fc")" "$pp" "$fp"
	print_baseline_medians "$results" "$c" "accept msg/s:3" "CPU ms/msg:4" "peak PSS MiB:5"
done
