#!/usr/bin/env bash
# Checks the systemd units with `systemd-analyze verify`, as installed by a package:
#
#   deploy/verify-units.sh target/debian/clipsight_0.1.0-1_arm64.deb
#   deploy/verify-units.sh            # the units in deploy/ and the host build's binary
#
# verify wants the ExecStart binary to exist, so the units are checked from a temporary copy
# whose ExecStart names the package's (or the build's) binary; nothing else is changed. It also
# checks that clipsight.service and clipsight@.service differ only in the profile lines.
#
# Needs systemd-analyze (package systemd) but no running systemd: it works in a container or
# on a CI machine whose PID 1 is something else.
set -euo pipefail
cd "$(dirname "$0")/.."
command -v systemd-analyze >/dev/null 2>&1 || {
    echo "error: systemd-analyze not found (apt-get install systemd)" >&2
    exit 1
}

WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
if [ $# -ge 1 ]; then
    dpkg-deb -x "$1" "$WORK/root"
    UNITS=$(dirname "$(find "$WORK/root" -name clipsight.service | head -n 1)")
    BIN="$WORK/root/usr/bin/clipsight"
else
    UNITS=deploy
    BIN="$(realpath "${CARGO_TARGET_DIR:-target}")/release/clipsight"
    [ -x "$BIN" ] || BIN="$(realpath "${CARGO_TARGET_DIR:-target}")/debug/clipsight"
fi
[ -x "$BIN" ] || { echo "error: no clipsight binary at $BIN" >&2; exit 1; }

mkdir -p "$WORK/units"
for unit in clipsight.service clipsight@.service; do
    [ -f "$UNITS/$unit" ] || { echo "error: $UNITS/$unit is missing" >&2; exit 1; }
    sed "s|/usr/bin/clipsight|$BIN|" "$UNITS/$unit" >"$WORK/units/$unit"
done

status=0
for unit in clipsight.service clipsight@wearable.service clipsight@home.service; do
    # --man=no: Documentation= is not looked up with man(1), which a CI machine may lack.
    if systemd-analyze verify --man=no "$WORK/units/$unit"; then
        echo "systemd-analyze verify $unit: ok"
    else
        echo "systemd-analyze verify $unit: FAILED"
        status=1
    fi
done

# The two units must stay identical apart from the profile selection and their comments.
profile_lines='^(#|Description=|Conflicts=|Environment=CLIPSIGHT_PROFILE|EnvironmentFile=|ExecStart=|SyslogIdentifier=|DefaultInstance=|$)'
if diff <(grep -Ev "$profile_lines" "$UNITS/clipsight.service") \
        <(grep -Ev "$profile_lines" "$UNITS/clipsight@.service"); then
    echo "clipsight.service and clipsight@.service: same settings"
else
    echo "clipsight.service and clipsight@.service differ beyond the profile (above)"
    status=1
fi
exit "$status"
