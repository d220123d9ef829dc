#!/usr/bin/env bash
# The README's walk-through, run exactly as written: the first ```sh block under its heading
# (and then the one under "Token limits", which goes on from it) is extracted and run top to bottom in a fresh folder (holding only links to target/ and
# examples/) and a network namespace of its own, where the block's fixed ports (8080, 8081,
# 9000) are free whatever runs on this machine. Fails on the first command that fails, or
# when the calls did not answer what the model server says.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
[ -x target/release/infergate ] || cargo build --release --locked -p infergate
command -v unshare >/dev/null && command -v ip >/dev/null || {
  sudo=""; [ "$(id -u)" = 0 ] || sudo=sudo
  $sudo apt-get update -qq && $sudo apt-get install -y -qq util-linux iproute2
}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
python3 - README.md >"$work/walkthrough.sh" <<'PY'
import sys
text = open(sys.argv[1]).read()
for heading in ("\n## Walk-through with the command line\n", "\n### Token limits\n"):
    section = text.split(heading, 1)[1]
    print(section.split("```sh\n", 1)[1].split("\n```", 1)[0])
PY
ln -s "$root/target" "$work/target"
ln -s "$root/examples" "$work/examples"
mkdir "$work/home"
cd "$work"
# A clean environment: no INFERGATE_* setting of this shell leaks in; the saved login goes
# to the folder's own home. Whatever the block left running is stopped at its end.
if ! env -i PATH="$PATH" HOME="$work/home" LANG=C.UTF-8 unshare -rn bash -c '
    ip link set lo up
    set -euo pipefail
    trap "kill \$(jobs -p) 2>/dev/null; wait" EXIT
    source ./walkthrough.sh' >"$work/out.log" 2>&1; then
  cat "$work/out.log"
  echo "walk-through: a command of the README's block failed (output above)" >&2
  exit 1
fi
# The chat call echoed the request's message; both /models calls (signed with curl, then
# with an AppCode) listed the model; the token limits' calls carried the fields the README
# shows.
grep -q '"content": "Hello through the gateway"' out.log \
  && [ "$(grep -c '"id": "demo"' out.log)" -eq 2 ] \
  && grep -q 'nothing sent' out.log \
  && grep -qi '^ratelimit-policy: .*"app_tokens";q=20000;w=60' out.log \
  && grep -qi '^ratelimit: .*"app_tokens";r=19915;' out.log \
  || { cat out.log; echo "walk-through: the calls did not answer as expected" >&2; exit 1; }
echo "walk-through: the README's block ran as written ($(grep -c '' walkthrough.sh) lines)"
