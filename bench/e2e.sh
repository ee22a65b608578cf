#!/usr/bin/env bash
# End-to-end benchmark: ptrelay and Postfix relaying to the same smtp-sink, method of
# bench/README.md.
#
#   bench/e2e.sh [-n REPS] [-w "5000:4096 2000:100000"] [-c 20] [-r "ptrelay postfix"] [-b BIN] [-k]
#
# For each workload N:BYTES (default 5000 messages of 4 KiB, then 2000 of 100 KB) and each repetition (default
# 5), runs `smtp-source -s C -m N -l BYTES` against ptrelay, then Postfix (interleaved, order alternating), and
# prints per run the accept rate (N / time until smtp-source is done), the end-to-end rate (N / time from the
# first injection until the sink has counted all N), CPU per message of the relay's process tree over that time
# and its peak PSS (sampled every 100 ms from /proc/PID/smaps_rollup); then medians and ptrelay/Postfix ratios.
#
# ptrelay routes everything to the sink as its smart host (tls "none", no AUTH); Postfix has the sink as
# relayhost. ptrelay starts with an empty data_dir for every run. -b BIN runs the ptrelay binary BIN too, as
# "baseline", interleaved with the others, and compares it with the build (before/after a change). Needs root,
# Go and the peers of scripts/install-peers. -k keeps the work directory.
set -euo pipefail
source "$(dirname "$0")/lib.sh"

reps=5 workloads="5000:4096 2000:100000" c=20 keep= relays="ptrelay postfix" baseline=
while getopts n:w:c:r:b:k opt; do
	case $opt in
	n) reps=$OPTARG ;;
	w) workloads=$OPTARG ;;
	c) c=$OPTARG ;;
	r) relays=$OPTARG ;;
	b) baseline=$OPTARG ;;
	k) keep=1 ;;
	*) awk 'NR > 1 && /^#/ { print; next } NR > 1 { exit }' "$0" >&2; exit 2 ;;
	esac
done
bench_setup e2e
results="$WORK/results"
: >"$results"

run() { # RELAY N BYTES REP
	local relay=$1 n=$2 size=$3 rep=$4 pid addr
	if [ "$relay" != postfix ]; then
		start_relay "$relay" "$WORK/ptrelay" "$pt_listen" "$SINK_ADDR"
		pid=$PTRELAY_PID addr=$pt_listen
	else
		pid=$POSTFIX_PID addr=$pf_listen
	fi
	local base
	base=$(sink_count)
	start_pss_sampler "$pid" "$WORK/pss"
	local cpu0 t0 t1 t2 cpu1 out
	cpu0=$($MEASURE cpu "$pid")
	t0=$($MEASURE now)
	if ! out=$(smtp-source -s "$c" -m "$n" -l "$size" -f "$FROM" -t "$TO" "$addr" 2>&1); then
		die "smtp-source against $relay failed: $out"
	fi
	t1=$($MEASURE now)
	if ! t2=$($MEASURE wait-count "$SINK_OUT" $((base + n)) 900); then
		die "$relay did not deliver $n messages to the sink within 900 s"
	fi
	cpu1=$($MEASURE cpu "$pid")
	stop_pss_sampler
	[ -z "$out" ] || log "smtp-source said: $(echo "$out" | head -3)"
	local accept e2e cpu_ms pss
	accept=$(python3 -c "print(f'{$n/($t1-$t0):.1f}')")
	e2e=$(python3 -c "print(f'{$n/($t2-$t0):.1f}')")
	cpu_ms=$(python3 -c "print(f'{($cpu1-$cpu0)*1000/$n:.3f}')")
	pss=$(($(cat "$WORK/pss" 2>/dev/null || echo 0) / 1024))
	printf '%-8s N=%-5s %6s B rep %s  accept %8s msg/s  end-to-end %8s msg/s  cpu %7s ms/msg  peak PSS %4s MiB\n' \
		"$relay" "$n" "$size" "$rep" "$accept" "$e2e" "$cpu_ms" "$pss"
	echo "$relay $n:$size $accept $e2e $cpu_ms $pss" >>"$results"
	[ "$relay" != postfix ] && stop_ptrelay
	return 0
}

echo "end-to-end benchmark: C=$c, workloads {$workloads}, $reps repetitions, $(nproc) CPUs, $(date -u +%FT%TZ)"
for w in $workloads; do
	for rep in $(seq "$reps"); do
		for relay in $(run_order "$relays" "$rep"); do run "$relay" "${w%:*}" "${w#*:}" "$rep"; done
	done
done

echo
echo "medians (ratio = ptrelay / Postfix; for CPU and PSS lower is better):"
for w in $workloads; do
	med() { $MEASURE median $(awk -v r="$1" -v w="$w" -v f="$2" '$1 == r && $2 == w { print $f }' "$results"); }
	pa=$(med ptrelay 3) fa=$(med postfix 3) pe=$(med ptrelay 4) fe=$(med postfix 4)
	pc=$(med ptrelay 5) fc=$(med postfix 5) pp=$(med ptrelay 6) fp=$(med postfix 6)
	printf '%s (N:bytes) C=%s\n' "$w" "$c"
	printf '  accept msg/s:      ptrelay %8s  Postfix %8s  ratio %s\n' "$pa" "$fa" "$(ratio "$pa" "$fa")"
	printf '  end-to-end msg/s:  ptrelay %8s  Postfix %8s  ratio %s\n' "$pe" "$fe" "$(ratio "$pe" "$fe")"
	printf '  CPU ms/msg:        ptrelay %8s  Postfix %8s  ratio %s\n' "$pc" "$fc" "$(ratio "$pc" "$fc")"
	printf '  peak PSS MiB:      ptrelay %8s  Postfix %8s  ratio %s\n' "$pp" "$fp" "$(ratio "$pp" "$fp")"
	print_baseline_medians "$results" "$w" "accept msg/s:3" "end-to-end msg/s:4" "CPU ms/msg:5" "peak PSS MiB:6"
done
