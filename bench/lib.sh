# Shared functions of the bench scripts (sourced, not run). Linux, root (a private Postfix needs it), the
# Debian peers of scripts/install-peers.

BENCH_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO_DIR=$(cd "$BENCH_DIR/.." && pwd)
MEASURE="python3 $BENCH_DIR/measure.py"
export PATH="$PATH:/usr/local/go/bin:/usr/sbin:/sbin"

FROM=from@example.test
TO=to@example.org

die() { echo "bench: $*" >&2; exit 1; }

# run_order RELAYS REP: the relays in the order repetition REP runs them. Every other repetition reverses it, so
# that a slow phase of the machine does not favour one side.
run_order() {
	if [ $(($2 % 2)) -eq 0 ]; then
		echo "$1" | awk '{ for (i = NF; i > 0; i--) printf "%s ", $i }'
	else
		echo "$1"
	fi
}
log() { echo "# $*" >&2; }

need() {
	local p
	for p in "$@"; do command -v "$p" >/dev/null || die "needs $p (scripts/install-peers installs the peers)"; done
	[ "$(id -u)" -eq 0 ] || die "needs root (a private Postfix instance)"
}

free_port() { # HOST
	python3 -c 'import socket,sys; s=socket.socket(); s.bind((sys.argv[1],0)); print(s.getsockname()[1])' "$1"
}

wait_port() { # HOST PORT [SECONDS]: fails when nothing accepts in time
	python3 - "$1" "$2" "${3:-30}" <<'PY'
import socket, sys, time
deadline = time.time() + float(sys.argv[3])
while time.time() < deadline:
    try:
        socket.create_connection((sys.argv[1], int(sys.argv[2])), 1).close()
        sys.exit(0)
    except OSError:
        time.sleep(0.05)
sys.exit(1)
PY
}

# build_ptrelay WORK: builds ./cmd/ptrelay into WORK/bin/ptrelay.
build_ptrelay() {
	(cd "$REPO_DIR" && go build -o "$1/bin/ptrelay" ./cmd/ptrelay) || die "go build ./cmd/ptrelay failed"
	PTRELAY_BIN="$1/bin/ptrelay"
}

# start_sink WORK HOST: smtp-sink -c on HOST; sets SINK_PID, SINK_ADDR, SINK_OUT (its counters).
start_sink() {
	local port
	port=$(free_port "$2")
	SINK_OUT="$1/sink.out"
	local user=()
	[ "$(id -u)" -eq 0 ] && user=(-u root)
	smtp-sink "${user[@]}" -c "$2:$port" 1000 >"$SINK_OUT" 2>"$1/sink.err" &
	SINK_PID=$!
	SINK_ADDR="$2:$port"
	wait_port "$2" "$port" || die "smtp-sink did not start: $(cat "$1/sink.err")"
}

sink_count() { # the sink's completed-message counter
	tr '\r' '\n' <"$SINK_OUT" | sed -n 's/.*mesg=\([0-9]*\).*/\1/p' | tail -1 | sed 's/^$/0/'
}

# start_postfix DIR LISTEN RELAYHOST: a private Postfix as a pure relay: Debian's shipped master.cf (smtpd on
# LISTEN instead of port 25, no chroot, which would need copies of system files) and defaults, except
# relayhost, mynetworks 127.0.0.0/8, no local delivery and its own directories and log; $POSTFIX_EXTRA (main.cf
# lines) is added last. Sets POSTFIX_PID.
start_postfix() {
	local dir=$1 listen=$2 relayhost=$3
	mkdir -p "$dir/conf" "$dir/queue" "$dir/data"
	chmod 755 "$dir"
	chown postfix "$dir/data"
	cat >"$dir/conf/main.cf" <<CF
compatibility_level = 3.6
queue_directory = $dir/queue
data_directory = $dir/data
maillog_file = $dir/maillog
maillog_file_prefixes = $dir
syslog_name = bench-postfix
myhostname = postfix.bench.test
mydestination =
local_recipient_maps =
local_transport = error:5.1.1 no local delivery
alias_maps =
alias_database =
inet_interfaces = loopback-only
inet_protocols = ipv4
mynetworks = 127.0.0.0/8
relayhost = [${relayhost%:*}]:${relayhost##*:}
${POSTFIX_EXTRA:-}
CF
	awk -v listen="$listen" 'BEGIN { OFS = "\t" }
		/^smtp[ \t]+inet/ { print listen, "inet", "n", "-", "n", "-", "-", "smtpd"; next }
		/^[a-z]/ && NF >= 8 && $2 ~ /^(unix|inet|fifo|pass|unix-dgram)$/ { $5 = "n" }
		{ print }' /etc/postfix/master.cf >"$dir/conf/master.cf"
	postfix -c "$dir/conf" start >/dev/null 2>&1 || { tail -20 "$dir/maillog" >&2; die "postfix start failed"; }
	POSTFIX_PID=$(tr -d ' ' <"$dir/queue/pid/master.pid")
	wait_port "${listen%:*}" "${listen##*:}" || { tail -20 "$dir/maillog" >&2; die "Postfix does not accept on $listen"; }
}

stop_postfix() { # DIR
	[ -f "$1/queue/pid/master.pid" ] || return 0
	postfix -c "$1/conf" stop >/dev/null 2>&1 || true
}

postfix_queue_size() { # DIR: messages not yet delivered
	find "$1/queue/incoming" "$1/queue/active" "$1/queue/deferred" "$1/queue/maildrop" -type f 2>/dev/null | wc -l
}

# start_relay RELAY DIR LISTEN SMARTHOST: start_ptrelay with the binary of RELAY (ptrelay: the build; baseline:
# the -b binary).
start_relay() {
	local bin=$PTRELAY_BIN
	[ "$1" = baseline ] && bin=$BASELINE_BIN
	PTRELAY_BIN=$bin start_ptrelay "$2" "$3" "$4"
}

# smarthost_toml ADDR: the smart host table for $PTRELAY_BIN: the [[smarthosts]] list, with as many sessions as
# delivery.per_destination allows (as Postfix opens), or for a baseline built before the list existed, the
# single [smarthost] table it reads.
smarthost_toml() {
	local probe
	probe=$(mktemp)
	printf '[[smarthosts]]\nname = "sink"\naddress = "%s"\ntls = "none"\n' "$1" >"$probe"
	if "$PTRELAY_BIN" config check -config "$probe" >/dev/null 2>&1; then
		printf '[[smarthosts]]\nname = "sink"\naddress = "%s"\ntls = "none"\nmax_connections = 20\nmax_recipients = 1000\n' "$1"
	else
		printf '[smarthost]\naddress = "%s"\ntls = "none"\n' "$1"
	fi
	rm -f "$probe"
}

# start_ptrelay DIR LISTEN SMARTHOST: ptrelay serve with a fresh data_dir, routing everything to SMARTHOST
# without TLS or AUTH; DNS, whoami, DNSBL and the port-25 probe point at a dead loopback port so that nothing
# leaves the machine; $PTRELAY_EXTRA (more tables) is added last. Sets PTRELAY_PID.
start_ptrelay() {
	local dir=$1 listen=$2 smarthost=$3
	rm -rf "$dir"
	mkdir -p "$dir"
	cat >"$dir/ptrelay.toml" <<CF
hostname = "ptrelay.bench.test"
data_dir = "$dir/data"

[smtp]
listen = ["$listen"]
allowed_networks = ["127.0.0.0/8"]

$(smarthost_toml "$smarthost")

[routing]
mode = "smarthost"
reroute = false

[dns]
resolvers = ["127.0.0.1:9"]
timeout = "1s"

[egress]
ip = "192.0.2.10"
whoami = ["127.0.0.1:9"]
dnsbl = []
port25_probe = "127.0.0.1:9"

[admin]
socket = "$dir/admin.sock"
${PTRELAY_EXTRA:-}
CF
	"$PTRELAY_BIN" serve -config "$dir/ptrelay.toml" >"$dir/ptrelay.log" 2>&1 &
	PTRELAY_PID=$!
	wait_port "${listen%:*}" "${listen##*:}" 60 || { tail -20 "$dir/ptrelay.log" >&2; die "ptrelay did not start"; }
}

stop_ptrelay() {
	[ -n "${PTRELAY_PID:-}" ] || return 0
	kill "$PTRELAY_PID" 2>/dev/null || true
	local i
	for i in $(seq 100); do kill -0 "$PTRELAY_PID" 2>/dev/null || break; sleep 0.1; done
	kill -9 "$PTRELAY_PID" 2>/dev/null || true
	wait "$PTRELAY_PID" 2>/dev/null || true
	PTRELAY_PID=
}

# start_pss_sampler PID FILE / stop_pss_sampler: peak PSS of PID's process tree while a run goes on.
start_pss_sampler() {
	$MEASURE peak-pss "$1" "$2" &
	SAMPLER_PID=$!
}
stop_pss_sampler() {
	kill "$SAMPLER_PID" 2>/dev/null || true
	wait "$SAMPLER_PID" 2>/dev/null || true
}

# print_baseline_medians RESULTS KEY FIELD...: with -b, one line per FIELD (name:column of RESULTS) comparing
# ptrelay with the baseline binary, for the rows whose second column is KEY.
print_baseline_medians() {
	[ -n "${baseline:-}" ] || return 0
	local results=$1 key=$2 f name col b p
	shift 2
	for f in "$@"; do
		name=${f%:*} col=${f##*:}
		b=$($MEASURE median $(awk -v k="$key" -v c="$col" '$1 == "baseline" && $2 == k { print $c }' "$results"))
		p=$($MEASURE median $(awk -v k="$key" -v c="$col" '$1 == "ptrelay" && $2 == k { print $c }' "$results"))
		printf '  %-19s ptrelay %8s  baseline %7s  ratio %s\n' "$name:" "$p" "$b" "$(ratio "$p" "$b")"
	done
}

# ratio A B: A/B with 2 decimals.
ratio() {
	python3 -c '
import sys
try:
    a, b = map(float, sys.argv[1:])
    print(f"{a/b:.2f}")
except (ValueError, ZeroDivisionError):
    print("n/a")' "$1" "$2"
}

# bench_setup NAME: the work directory (removed at exit unless $keep), the ptrelay build when $relays has it,
# the sink on 127.0.0.3 (SINK_ADDR), a private Postfix relaying to it on $pf_listen, and $pt_listen for ptrelay.
# With $baseline (-b BIN) set, "baseline" joins $relays: that ptrelay binary, run like the one just built.
bench_setup() {
	need smtp-sink smtp-source postfix go python3
	WORK=$(mktemp -d "/tmp/ptrelay-bench-$1.XXXXXX")
	chmod 755 "$WORK"
	trap bench_cleanup EXIT
	[[ " $relays " == *" ptrelay "* ]] && build_ptrelay "$WORK"
	if [ -n "${baseline:-}" ]; then
		[ -x "$baseline" ] || die "-b $baseline: not an executable"
		BASELINE_BIN=$(cd "$(dirname "$baseline")" && pwd)/$(basename "$baseline")
		[[ " $relays " == *" baseline "* ]] || relays="$relays baseline"
	fi
	start_sink "$WORK" 127.0.0.3
	pf_listen=127.0.0.5:$(free_port 127.0.0.5)
	start_postfix "$WORK/postfix" "$pf_listen" "$SINK_ADDR"
	pt_listen=127.0.0.6:$(free_port 127.0.0.6)
}

bench_cleanup() {
	stop_ptrelay
	stop_postfix "$WORK/postfix"
	[ -n "${SINK_PID:-}" ] && kill "$SINK_PID" 2>/dev/null
	if [ -n "$keep" ]; then log "work directory kept: $WORK"; else rm -rf "$WORK"; fi
}
