"""One ``sh`` script per Linux host: the whole common path in one SSH session.

The script is started as ``sudo -n sh -c SCRIPT`` (plain ``sh -c`` when the login is root); the
``--config`` file arrives on its stdin, never in argv. In one session it makes its private
directory (``umask 077``, ``mktemp -d``, the path checked against the exact pattern), reads the
host clock, checks elevation, finds the agent, runs ``show --json`` (its state and its version
in one call), decides whether the host is already connected, and only then writes the
config from stdin, runs ``connect --config``, removes the config, and verifies with ``show --json``
(or sends the tail of azcmagent.log on failure). A gated run (``ScriptParams.gate``) stops before
the config: it sends a ``ready`` record and reads one line on stdin; ``go`` lets it go on (the
config follows that line), anything else or EOF ends it without connecting. The engine takes the
host's agent slot only when it sees ``ready``, so the slot covers the connect, not the SSH
handshake, sudo and preflight, which overlap other hosts' connects. A ``trap`` removes the
directory on every exit path, and a detached timer removes it after the command deadline even if
the session (or arcfleet) is killed first; older ``arcfleet.*`` directories the same user left
behind are removed too.

Each step's stdout and stderr are captured to files in the private directory (``$D/K.o``,
``$D/K.e``) and sent as counted bytes in the framed report of :mod:`fleet.engine.frames`, at most
``cap`` bytes of each. Records are sent in batches (one ``stat`` and one ``cat`` per batch), before
each agent call and at the end, so a step that hangs has every earlier step already reported; the
rest uses shell builtins wherever POSIX ``sh`` has one (the clock from ``/proc/uptime``, the uid
from ``/proc/self/status``, the agent's state without ``tr``): every process counts on a busy host.
A step is a name and a command: ``step NAME CMD...`` (``quick_step`` for functions that cannot
hang), then ``flush`` where the engine must hear of it before the script goes on.

The first line is a comment carrying the same parameters as JSON: the real shell ignores it, the
lab (:mod:`fleet.lab.host_script`) reads it to simulate the script. Every value in the script
itself is quoted with :func:`shlex.quote`.
"""

from __future__ import annotations

import json
import shlex
from dataclasses import asdict

from fleet.azcm.agent_config import (
    CERT_PATH_MARK,
    PROXY_GET_STEP,
    PROXY_URL,
    agent_settings,
    setting_step,
)
from fleet.azcm.commands import ScriptParams
from fleet.azcm.commands_linux import AGENT_FALLBACK, AGENT_NAME, LOG_PATH
from fleet.inventory.model import ResolvedHost

SCRIPT_MARK = "# arcfleet host script 1 "
PRIVATE_PREFIX = "/tmp/arcfleet."
PRIVATE_TEMPLATE = PRIVATE_PREFIX + "XXXXXXXX"
CONFIG_NAME = "connect.json"
# The service principal's certificate, by format (fleet.engine.sp_certificate names it so).
CERT_FILES = ("sp-cert.pem", "sp-cert.pfx")
CERT_NAMES = "|".join(CERT_FILES)


def is_private_dir(path: str) -> bool:
    """Exactly what ``mktemp -d /tmp/arcfleet.XXXXXXXX`` makes (issue 16 item 9)."""
    suffix = path[len(PRIVATE_PREFIX) :]
    return (
        path.startswith(PRIVATE_PREFIX)
        and len(suffix) == 8
        and suffix.isascii()
        and suffix.isalnum()
    )


def command_line(params: ScriptParams, host: ResolvedHost, *, become: bool) -> str:
    """The one command for the session: ``[sudo -n] sh -c SCRIPT``."""
    prefix = "sudo -n " if become else ""
    return f"{prefix}sh -c {shlex.quote(build(params, host))}"


def build(params: ScriptParams, host: ResolvedHost) -> str:
    q = shlex.quote
    settings = agent_settings(host)
    # Agent settings (the proxy) go in before connect, each its own step; a failure stops there.
    setting_steps = "".join(
        f'if ! step {setting_step(key)} "$A" config set {q(key)} {q(value)}; then finish; fi\n'
        for key, value in settings
    )
    header = SCRIPT_MARK + json.dumps(
        {
            **asdict(params),
            "settings": settings,
            "log_path": LOG_PATH,
            "agent_fallback": AGENT_FALLBACK,
        },
        separators=(",", ":"),
    )
    # Minutes after which a leftover dir is surely not a live run's: its timer has fired.
    leftover_min = params.cleanup_after_s // 60 + 2
    return f"""{header}
set -u
# C locale: byte counts from ${{#var}}, and tools' messages in English for the classifier.
LC_ALL=C
export LC_ALL
B={q(params.boundary)}
MODE={q(params.mode)}
CAP={int(params.cap)}
TAIL={int(params.log_tail_bytes)}
TTL={int(params.cleanup_after_s)}
GATE={1 if params.gate else 0}
LOG={q(LOG_PATH)}
FALLBACK={q(AGENT_FALLBACK)}
D=
C=
# Steps finished but not yet sent (their numbers), and the last step's number.
P=
K=0
# Builtins wherever a process can be avoided: each fork counts on a busy host.
now() {{
  # T: milliseconds (10 ms resolution) from /proc/uptime, read with the shell's own read.
  if read -r up _ </proc/uptime 2>/dev/null; then
    c=${{up#*.}}; c=${{c#0}}
    T=$(( ${{up%.*}} * 1000 + ${{c:-0}} * 10 ))
  else
    T=$(( $(date +%s) * 1000 ))
  fi
}}
cleanup() {{
  if [ -n "$C" ]; then kill "$C" 2>/dev/null; fi
  if [ -n "$D" ]; then
    tp=
    if [ -f "$D/timer" ]; then read -r tp <"$D/timer"; fi
    if [ -n "$tp" ]; then kill "$tp" 2>/dev/null; fi
    rm -rf -- "$D"
  fi
}}
trap cleanup EXIT
trap 'exit 129' HUP
trap 'exit 130' INT
trap 'exit 143' TERM
emit() {{
  ol=${{#4}}; el=${{#5}}
  printf '%s step %s %s %s %s %s %s %s\n%s%s' "$B" "$1" "$2" "$3" $ol $ol $el $el "$4" "$5"
}}
flush() {{
  # Sends the pending steps: one stat for all their sizes and one cat for all their bytes
  # (each record's header is written to a file beside its output); head only past the cap.
  [ -n "$P" ] || return 0
  files=; big=
  for k in $P; do
    if [ -s "$D/$k.o" ] || [ -s "$D/$k.e" ]; then big=1; fi
    files="$files $D/$k.o $D/$k.e"
  done
  if [ -n "$big" ]; then
    sizes=$(stat -c %s $files 2>/dev/null) || {{
      sizes=; for f in $files; do sizes="$sizes $(wc -c <"$f")"; done
    }}
  else
    sizes=; for k in $P; do sizes="$sizes 0 0"; done
  fi
  set -- $sizes
  parts=; over=
  for k in $P; do
    ot=$1; et=$2; shift 2
    os=$ot; if [ $os -gt $CAP ]; then os=$CAP; over=1; fi
    es=$et; if [ $es -gt $CAP ]; then es=$CAP; over=1; fi
    read -r hn hr hm <"$D/$k.m"
    h="$B step $hn $hr $hm $ot $os $et $es"
    if [ -n "$big" ]; then
      printf '%s\n' "$h" >"$D/$k.h"
      parts="$parts $D/$k.h $D/$k.o $D/$k.e"
    else
      printf '%s\n' "$h"
    fi
  done
  if [ -n "$big" ] && [ -z "$over" ]; then
    cat $parts
  elif [ -n "$over" ]; then
    for k in $P; do
      read -r h <"$D/$k.h"
      printf '%s\n' "$h"
      set -- $h
      head -c $7 "$D/$k.o"
      head -c $9 "$D/$k.e"
    done
  fi
  P=
}}
done_step() {{
  # Records a finished step (name, status, ms) to be sent by the next flush.
  printf '%s %s %s\n' "$1" "$2" "$3" >"$D/$K.m"
  P="$P $K"
}}
step() {{
  # One step: a name and a command. Its output goes to $D/K.o and $D/K.e (K counts steps)
  # and its record is sent with the next flush; $O names the last step's stdout file.
  n=$1; shift; K=$((K + 1)); now; s=$T
  # In the background and waited for: a TERM (the SSH deadline) interrupts the wait, so the
  # trap runs at once and stops the step, instead of after it.
  "$@" >"$D/$K.o" 2>"$D/$K.e" </dev/null &
  C=$!
  wait $C
  r=$?
  C=
  now
  done_step "$n" $r $((T - s))
  O=$D/$K.o
  return $r
}}
quick_step() {{
  # As step, for builtins and shell functions that cannot hang: no process at all (and the
  # script's stdin stays the command's stdin: write_config reads the config from it).
  n=$1; shift; K=$((K + 1)); now; s=$T
  "$@" >"$D/$K.o" 2>"$D/$K.e"
  r=$?
  now
  done_step "$n" $r $((T - s))
  O=$D/$K.o
  return $r
}}
finish() {{
  flush
  printf '%s end\n' "$B"
  exit 0
}}
private_ok() {{
  case $1 in {q(PRIVATE_PREFIX)}*) ;; *) return 1 ;; esac
  x=${{1#{q(PRIVATE_PREFIX)}}}
  [ ${{#x}} -eq 8 ] || return 1
  case $x in *[!A-Za-z0-9]*) return 1 ;; esac
  [ -d "$1" ] && [ ! -L "$1" ]
}}
read_uid() {{
  # uid: what `id -u` prints, from the shell's own /proc/self/status (the effective uid),
  # without a process; `id -u` where there is no /proc.
  uid=
  if [ -r /proc/self/status ]; then
    while read -r k _ e _; do
      case $k in Uid:) uid=$e; return 0 ;; esac
    done </proc/self/status
  fi
  id -u >"$D/uid" && read -r uid <"$D/uid"
}}
find_agent() {{
  # A: the agent's path, by the shell's own `command -v` (into a file, read back: no process).
  A=
  {{ command -v {AGENT_NAME} || command -v "$FALLBACK"; }} >"$D/agent" 2>/dev/null || return 1
  read -r A <"$D/agent"
}}
# stdin: the config as one JSON line, then the certificate in base64 when it has the mark
# (agent_config.script_stdin). `read` stops at the newline, so base64 -d gets the rest.
write_config() {{
  # New files in a new 0700 directory under umask 077: created 0600, no chmod needed.
  # (read fails at an end of input without a newline, yet has the text: keep it)
  IFS= read -r cfg || [ -n "$cfg" ] || return 1
  case $cfg in
    *{q(CERT_PATH_MARK)}/*)
      rest=${{cfg#*{q(CERT_PATH_MARK)}/}}
      name=${{rest%%'"'*}}
      case $name in {CERT_NAMES}) ;; *) echo "unexpected certificate name" >&2; return 1 ;; esac
      base64 -d >"$D/$name" || return 1
      cfg=${{cfg%%{q(CERT_PATH_MARK)}*}}$D${{cfg#*{q(CERT_PATH_MARK)}}}
      ;;
  esac
  printf '%s\\n' "$cfg" >"$D/{CONFIG_NAME}"
}}
printf '%s arcfleet-report 1\n' "$B"
umask 077
now; s=$T
if ! made=$(mktemp -d {PRIVATE_TEMPLATE} 2>&1); then
  now; emit workdir 1 $((T - s)) '' "$made"
  finish
fi
if ! private_ok "$made"; then
  now; emit workdir 1 $((T - s)) '' "mktemp made an unexpected path: $made"
  finish
fi
D=$made
now; emit workdir 0 $((T - s)) "$D" ''
# Elevation and the agent's path are known to the shell itself: sent as they are (nothing is
# pending yet, so the order holds), without files to measure and copy.
now; s=$T
read_uid
r=$?
now; emit elevation $r $((T - s)) "${{uid:+$uid
}}" ''
if [ "$uid" != 0 ]; then finish; fi
now; s=$T
find_agent
r=$?
now; emit locate $r $((T - s)) "${{A:+$A
}}" ''
if [ $r -ne 0 ] || [ -z "$A" ]; then finish; fi
step show "$A" show --json
shown=$?
if [ "$MODE" = preflight ]; then
  step {PROXY_GET_STEP} "$A" config get {PROXY_URL}
  finish
fi
if [ "$MODE" != force ]; then
  if [ $shown -ne 0 ]; then finish; fi
  # show's JSON without blanks, by the shell's own field splitting (no tr process).
  state=
  set -f
  while IFS= read -r line || [ -n "$line" ]; do
    IFS=' \t\r'
    for w in $line; do state=$state$w; done
    unset IFS
  done <"$O"
  set +f
  case $state in *'"'[Ss]tatus'":'*) ;; *) finish ;; esac
  case $state in
    *'"'[Ss]tatus'":"'[Cc]onnected'"'*|*'"'[Rr]esource[Ii]d'":"/'*) finish ;;
  esac
fi
for x in /tmp/arcfleet.????????; do
  if [ "$x" != "$D" ] && [ -d "$x" ]; then
    # A directory whose timer still runs is another run's, live: no sweep (no process) for it.
    tp=
    if [ -r "$x/timer" ]; then read -r tp <"$x/timer" 2>/dev/null; fi
    if [ -n "$tp" ] && kill -0 "$tp" 2>/dev/null; then continue; fi
    find /tmp -maxdepth 1 -type d -name 'arcfleet.????????' ! -path "$D" -user "$uid" \\
      -mmin +{leftover_min} -exec rm -rf -- {{}} + 2>/dev/null
    break
  fi
done
{setting_steps}# The timer runs in its own session (setsid): killing its processes leaves it.
T='sleep "$1" & echo $! >"$2/timer"; wait $! && rm -rf -- "$2"'
if command -v setsid >/dev/null 2>&1; then
  setsid sh -c "$T" arcfleet-timer "$TTL" "$D" </dev/null >/dev/null 2>&1 &
else
  sh -c "$T" arcfleet-timer "$TTL" "$D" </dev/null >/dev/null 2>&1 &
fi
if [ $GATE = 1 ]; then
  # Preflight is done: tell the engine, and wait (idle) until it holds an agent slot for this
  # host and says "go" on stdin, the config after that line; anything else ends the script.
  quick_step ready true
  flush
  go=
  read -r go || go=
  if [ "$go" != go ]; then finish; fi
fi
quick_step config write_config
r=$?
flush
if [ $r -ne 0 ]; then finish; fi
step connect "$A" connect --config "$D/{CONFIG_NAME}" --verbose
connected=$?
step cleanup rm -f -- "$D/{CONFIG_NAME}" {" ".join(f'"$D/{n}"' for n in CERT_FILES)}
flush
if [ $connected -eq 0 ]; then
  step verify "$A" show --json
else
  # The host's clock only for a failure: the classifier reads a time-window error as the
  # clock's when the clock is off (one process less on the success path).
  step clock date -u +%Y-%m-%dT%H:%M:%SZ
  step log tail -c "$TAIL" -- "$LOG"
fi
finish
"""
