#!/usr/bin/env bash
# DKIM benchmark: end-to-end msg/s with signing on, ptrelay against what admins would set up instead, Postfix
# with OpenDKIM as a milter, by the method of bench/README.md.
#
#   bench/dkim.sh [-n REPS] [-w "5000:4096 2000:100000"] [-c 20] [-r "ptrelay postfix-dkim ptrelay-nosign"] [-k]
#
# One RSA-2048 key (made by `ptrelay dkim keygen`) for example.test, the domain of smtp-source's From:, signs in
# both relays, relaxed/relaxed, rsa-sha256:
#   ptrelay         [dkim] with that key; everything to the sink as its smart host (no TLS, no AUTH);
#   postfix-dkim    a private Postfix (as in e2e.sh) with smtpd_milters = OpenDKIM (Debian's opendkim, Mode s,
#                   the same key), relaying to the same sink;
#   ptrelay-nosign  ptrelay without [dkim]: the cost of signing is the difference (and postfix, without the milter,
#                   can be added with -r).
# For each workload N:BYTES and each repetition (default 5), runs `smtp-source -s C -m N -l BYTES` against each
# relay, interleaved, order alternating, and prints the accept rate, the end-to-end rate (N / time from the first
# injection until the sink counted all N), CPU per message over that time (ptrelay's process; Postfix's process
# tree plus the opendkim process) and peak PSS; then medians and ratios. Before the timed runs, one message
# through each signing relay is dumped by a second sink and checked for its DKIM-Signature (d=, s=, c=); after
# each ptrelay run its ptrelay_dkim_signed_total must equal N. Needs root, Go, the peers of scripts/install-peers
# (opendkim included). -k keeps the work directory.
set -euo pipefail
source "$(dirname "$0")/lib.sh"

reps=5 workloads="5000:4096 2000:100000" c=20 keep= relays="ptrelay postfix-dkim ptrelay-nosign" baseline=
while getopts n:w:c:r:k opt; do
	case $opt in
	n) reps=$OPTARG ;;
	w) workloads=$OPTARG ;;
	c) c=$OPTARG ;;
	r) relays=$OPTARG ;;
	k) keep=1 ;;
	*) awk 'NR > 1 && /^#/ { print; next } NR > 1 { exit }' "$0" >&2; exit 2 ;;
	esac
done
need opendkim
# bench_setup builds ptrelay when $relays names "ptrelay"; the other ptrelay variant needs it too.
[[ " $relays " == *" ptrelay-nosign "* && " $relays " != *" ptrelay "* ]] && relays="ptrelay $relays"
bench_setup dkim
results="$WORK/results"
: >"$results"

KEY="$WORK/example.test.bench.pem"
"$PTRELAY_BIN" dkim keygen -domain example.test -selector bench -out "$KEY" >"$WORK/keygen.out"

# OpenDKIM refuses a configuration or key file on a path others may write (/tmp, where the work directory is):
# its files live in a private directory under root's home, removed at exit.
ODK_HOME=$(mktemp -d "${HOME:-/root}/.ptrelay-bench-opendkim.XXXXXX")
chmod 700 "$ODK_HOME"

# start_opendkim NAME: OpenDKIM signing for example.test with a copy of $KEY on a loopback port; sets
# OPENDKIM_PID and OPENDKIM_SOCKET.
start_opendkim() {
	local dir=$ODK_HOME/$1 port
	mkdir -p "$dir"
	install -m 600 "$KEY" "$dir/key.pem"
	port=$(free_port 127.0.0.1)
	OPENDKIM_SOCKET="inet:$port@127.0.0.1" # Postfix writes the same as inet:127.0.0.1:$port
	OPENDKIM_PORT=$port
	cat >"$dir/opendkim.conf" <<CF
Syslog                  no
Mode                    s
Domain                  example.test
Selector                bench
KeyFile                 $dir/key.pem
Canonicalization        relaxed/relaxed
SignatureAlgorithm      rsa-sha256
OversignHeaders         From
InternalHosts           127.0.0.0/8
Socket                  $OPENDKIM_SOCKET
PidFile                 $dir/opendkim.pid
CF
	opendkim -f -x "$dir/opendkim.conf" >"$dir/opendkim.log" 2>&1 &
	OPENDKIM_PID=$!
	wait_port 127.0.0.1 "$port" || { cat "$dir/opendkim.log" >&2; die "opendkim did not start"; }
}

stop_opendkim() {
	[ -n "${OPENDKIM_PID:-}" ] || return 0
	kill "$OPENDKIM_PID" 2>/dev/null || true
	wait "$OPENDKIM_PID" 2>/dev/null || true
	OPENDKIM_PID=
}

# start_postfix_dkim DIR LISTEN RELAYHOST: start_postfix with OpenDKIM as its milter. Sets POSTFIX_PID.
start_postfix_dkim() {
	start_opendkim "$(basename "$1")"
	POSTFIX_EXTRA="smtpd_milters = inet:127.0.0.1:$OPENDKIM_PORT
non_smtpd_milters = \$smtpd_milters
milter_default_action = tempfail" start_postfix "$1" "$2" "$3"
}

# start_signing_ptrelay DIR LISTEN SMARTHOST METRICS: ptrelay with [dkim] and /metrics on METRICS.
start_signing_ptrelay() {
	PTRELAY_EXTRA="metrics_listen = \"$4\"
[dkim]
[[dkim.keys]]
domain = \"example.test\"
selector = \"bench\"
private_key_file = \"$KEY\"" start_ptrelay "$1" "$2" "$3"
}

cleanup_dkim() {
	stop_ptrelay
	stop_postfix "$WORK/postfix-dkim"
	stop_opendkim
	[ -n "${DUMP_PID:-}" ] && kill "$DUMP_PID" 2>/dev/null
	if [ -n "$keep" ]; then cp -r "$ODK_HOME" "$WORK/opendkim" 2>/dev/null || true; fi
	rm -rf "$ODK_HOME"
	bench_cleanup
}
trap cleanup_dkim EXIT

metrics=127.0.0.1:$(free_port 127.0.0.1)
pfd_listen=127.0.0.7:$(free_port 127.0.0.7)

# Sanity: one message through each signing relay to a dumping sink carries the signature asked for.
dump_dir="$WORK/dump"
mkdir -p "$dump_dir"
dport=$(free_port 127.0.0.8)
user=()
[ "$(id -u)" -eq 0 ] && user=(-u root)
smtp-sink "${user[@]}" -d "$dump_dir/msg." "127.0.0.8:$dport" 100 >/dev/null 2>&1 &
DUMP_PID=$!
wait_port 127.0.0.8 "$dport" || die "the dumping smtp-sink did not start"
check_signed() { # RELAY LISTEN
	local before after f
	before=$(ls "$dump_dir" | wc -l)
	smtp-source -m 1 -l 2000 -f "$FROM" -t "$TO" "$2" >/dev/null 2>&1 || die "smtp-source against $1 failed"
	for _ in $(seq 200); do
		after=$(ls "$dump_dir" | wc -l)
		[ "$after" -gt "$before" ] && break
		sleep 0.1
	done
	sleep 0.2
	f=$(ls -t "$dump_dir"/msg.* 2>/dev/null | head -1)
	[ -n "$f" ] || die "$1 delivered no sanity message"
	python3 - "$f" <<'PY' || die "$1 did not sign the sanity message as asked: $(head -30 "$f")"
import email, sys
sig = email.message_from_binary_file(open(sys.argv[1], "rb")).get("DKIM-Signature", "")
tags = dict(t.split("=", 1) for t in "".join(sig.split()).split(";") if "=" in t)
want = {"a": "rsa-sha256", "c": "relaxed/relaxed", "d": "example.test", "s": "bench"}
sys.exit(0 if all(tags.get(k) == v for k, v in want.items()) else 1)
PY
	log "$1 signs: d=example.test s=bench rsa-sha256 relaxed/relaxed"
}
if [[ " $relays " == *" ptrelay "* ]]; then
	start_signing_ptrelay "$WORK/ptrelay" "$pt_listen" "127.0.0.8:$dport" "$metrics"
	check_signed ptrelay "$pt_listen"
	stop_ptrelay
fi
if [[ " $relays " == *" postfix-dkim "* ]]; then
	start_postfix_dkim "$WORK/postfix-dkim-sanity" "$pfd_listen" "127.0.0.8:$dport"
	check_signed postfix-dkim "$pfd_listen"
	stop_postfix "$WORK/postfix-dkim-sanity"
	stop_opendkim
fi
kill "$DUMP_PID" 2>/dev/null || true
DUMP_PID=

# The timed instance of Postfix with OpenDKIM, started once like bench_setup's Postfix.
if [[ " $relays " == *" postfix-dkim "* ]]; then
	start_postfix_dkim "$WORK/postfix-dkim" "$pfd_listen" "$SINK_ADDR"
	PFD_PID=$POSTFIX_PID
fi

run() { # RELAY N BYTES REP
	local relay=$1 n=$2 size=$3 rep=$4 pid addr extra_pid=
	case $relay in
	ptrelay) start_signing_ptrelay "$WORK/ptrelay" "$pt_listen" "$SINK_ADDR" "$metrics"; pid=$PTRELAY_PID addr=$pt_listen ;;
	ptrelay-nosign) start_ptrelay "$WORK/ptrelay" "$pt_listen" "$SINK_ADDR"; pid=$PTRELAY_PID addr=$pt_listen ;;
	postfix-dkim) pid=$PFD_PID addr=$pfd_listen extra_pid=$OPENDKIM_PID ;;
	postfix) pid=$POSTFIX_PID addr=$pf_listen ;;
	*) die "unknown relay $relay" ;;
	esac
	local base
	base=$(sink_count)
	start_pss_sampler "$pid" "$WORK/pss"
	local cpu0 t0 t1 t2 cpu1 out xcpu0=0 xcpu1=0
	cpu0=$($MEASURE cpu "$pid")
	[ -n "$extra_pid" ] && xcpu0=$($MEASURE cpu "$extra_pid")
	t0=$($MEASURE now)
	if ! out=$(smtp-source -s "$c" -m "$n" -l "$size" -f "$FROM" -t "$TO" "$addr" 2>&1); then
		die "smtp-source against $relay failed: $out"
	fi
	t1=$($MEASURE now)
	if ! t2=$($MEASURE wait-count "$SINK_OUT" $((base + n)) 900); then
		die "$relay did not deliver $n messages to the sink within 900 s"
	fi
	cpu1=$($MEASURE cpu "$pid")
	[ -n "$extra_pid" ] && xcpu1=$($MEASURE cpu "$extra_pid")
	stop_pss_sampler
	[ -z "$out" ] || log "smtp-source said: $(echo "$out" | head -3)"
	if [ "$relay" = ptrelay ]; then
		local signed
		signed=$($MEASURE metric "http://$metrics/metrics" ptrelay_dkim_signed_total)
		python3 -c "import sys; sys.exit(0 if float('$signed') == $n else 1)" ||
			die "ptrelay signed $signed of $n messages"
	fi
	local accept e2e cpu_ms pss
	accept=$(python3 -c "print(f'{$n/($t1-$t0):.1f}')")
	e2e=$(python3 -c "print(f'{$n/($t2-$t0):.1f}')")
	cpu_ms=$(python3 -c "print(f'{(($cpu1-$cpu0)+($xcpu1-$xcpu0))*1000/$n:.3f}')")
	pss=$(($(cat "$WORK/pss" 2>/dev/null || echo 0) / 1024))
	printf '%-14s N=%-5s %6s B rep %s  accept %8s msg/s  end-to-end %8s msg/s  cpu %7s ms/msg  peak PSS %4s MiB\n' \
		"$relay" "$n" "$size" "$rep" "$accept" "$e2e" "$cpu_ms" "$pss"
	echo "$relay $n:$size $accept $e2e $cpu_ms $pss" >>"$results"
	case $relay in ptrelay*) stop_ptrelay ;; esac
	return 0
}

echo "DKIM benchmark: C=$c, workloads {$workloads}, relays {$relays}, $reps repetitions, $(nproc) CPUs, $(date -u +%FT%TZ)"
for w in $workloads; do
	for rep in $(seq "$reps"); do
		for relay in $(run_order "$relays" "$rep"); do run "$relay" "${w%:*}" "${w#*:}" "$rep"; done
	done
done

echo
echo "medians (ratio = ptrelay / Postfix+OpenDKIM; for CPU and PSS lower is better):"
for w in $workloads; do
	med() { $MEASURE median $(awk -v r="$1" -v w="$w" -v f="$2" '$1 == r && $2 == w { print $f }' "$results"); }
	printf '%s (N:bytes) C=%s\n' "$w" "$c"
	for f in "accept msg/s:3" "end-to-end msg/s:4" "CPU ms/msg:5" "peak PSS MiB:6"; do
		name=${f%:*} col=${f##*:}
		line=$(printf '  %-18s' "$name:")
		for r in $relays; do line+=$(printf ' %s %8s ' "$r" "$(med "$r" "$col")"); done
		if [[ " $relays " == *" ptrelay "* && " $relays " == *" postfix-dkim "* ]]; then
			line+=" ratio $(ratio "$(med ptrelay "$col")" "$(med postfix-dkim "$col")")"
		fi
		echo "$line"
	done
	if [[ " $relays " == *" ptrelay "* && " $relays " == *" ptrelay-nosign "* ]]; then
		python3 -c "print(f'  signing costs ptrelay {float(\"$(med ptrelay 5)\") - float(\"$(med ptrelay-nosign 5)\"):.3f} ms of CPU per message')"
	fi
done
