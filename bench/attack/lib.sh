# Sourced by onboarding.sh, ceremony.sh and console.sh: the helpers they share word for word.
# It only defines; it runs nothing. What differs between the scripts stays in each of them:
# the work directory and its cleanup trap, the databases, `run` (onboarding's also times the
# command), `clean_refusal` (which exit codes count as clean), `req`, `start` and `stop`.
#
# When called, these use the script's $W (its work directory, with its h.py), $H (the headers
# of the last answer) and $T0 (when the run began).

# check DESCRIPTION CONDITION: evaluates CONDITION; prints a numbered ok or FAIL line.
fail=0; n=0; passed=0
check() {
  n=$((n + 1))
  if eval "$2"; then printf '  ok    %2d. %s\n' "$n" "$1"; passed=$((passed + 1))
  else printf '  FAIL  %2d. %s\n' "$n" "$1"; fail=1; fi
}
note() { echo "  info  $*"; }
# finish: the time taken and the count of checks passed; exits 1 if any failed.
finish() {
  echo "took $(( $(date +%s) - T0 )) s"
  echo "$passed/$n ok"
  exit $fail
}

# py FUNCTION ARGS...: a function of the script's own Python helper, $W/h.py.
py() { python3 "$W/h.py" "$@"; }

JSON=(-H 'Content-Type: application/json')
key() { printf 'Authorization: Bearer %s' "$1"; }
# hdr NAME: the first value of the header NAME in $H.
hdr() { grep -i "^$1:" <<<"$H" | head -n1 | cut -d' ' -f2- ; }
# gone_within SECONDS PID: whether PID has exited within SECONDS.
gone_within() { local i; for i in $(seq $(($1 * 10))); do kill -0 "$2" 2>/dev/null || return 0; sleep 0.1; done; return 1; }
