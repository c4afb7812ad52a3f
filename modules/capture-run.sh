#!/usr/bin/env bash
# One stage capture: a headless browser on a virtual display, its sound on a
# virtual sink, both encoded by ffmpeg and pushed as RTMP to the origin.
# The same script runs as venue-capture@<room>.service on NixOS
# (modules/capture.nix puts nixpkgs' Xvfb, PulseAudio, Chromium and
# ffmpeg-full on its PATH) and in the testbed with Debian's
# (portal/tests/capture_pipeline.rs).
#
# Usage: capture-run ROOM. Inputs: files `join-url` and `rtmp-url` in
# $CREDENTIALS_DIRECTORY (systemd LoadCredential) or $VENUE_CAPTURE_DIR.
# The join URL (it opens a session) is never put in argv or the environment,
# where other users could read it; the RTMP URL holds no secret (the origin
# allows publishing by address) and is ffmpeg's output argument.
# The first of the four processes to end ends the capture (systemd or the
# controller starts it again).
set -euo pipefail

room=${1:?usage: capture-run ROOM}
inputs=${CREDENTIALS_DIRECTORY:-${VENUE_CAPTURE_DIR:?neither CREDENTIALS_DIRECTORY nor VENUE_CAPTURE_DIR is set}}
work=${RUNTIME_DIRECTORY:-$VENUE_CAPTURE_DIR}/work
size=${CAPTURE_SIZE:-1280x720}
fps=${CAPTURE_FPS:-30}
# One keyframe per HLS fragment: nginx-rtmp cuts fragments on keyframes.
gop=${CAPTURE_GOP:-60}
vbitrate=${CAPTURE_VIDEO_BITRATE:-2300k}
chromium=${CAPTURE_CHROMIUM:-chromium}

for f in join-url rtmp-url; do
  [[ -s $inputs/$f ]] || { echo "capture $room: $inputs/$f is missing or empty" >&2; exit 2; }
done
rtmp=$(<"$inputs/rtmp-url")
[[ $rtmp == rtmp://* || $rtmp == rtmps://* ]] || { echo "capture $room: rtmp-url is not an rtmp:// URL" >&2; exit 2; }

rm -rf "$work"
# The umask, not `mkdir -m`: with -p, -m would apply to the last directory only.
(umask 077 && mkdir -p "$work")
export HOME=$work XDG_RUNTIME_DIR=$work XDG_CONFIG_HOME=$work/config

pids=()
# shellcheck disable=SC2317 # only reached through the traps below
cleanup() {
  trap - TERM INT EXIT
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$work"
}
trap 'cleanup; exit 0' TERM INT
trap cleanup EXIT

# 1. The display: Xvfb picks a free number and writes it to fd 5. No
# abstract socket (`-nolisten local`): those are shared by every capture
# in the host's network namespace, whatever their private /tmp.
Xvfb -displayfd 5 -screen 0 "${size}x24" -nolisten tcp -nolisten local -nocursor 5>"$work/display" 2>"$work/xvfb.log" &
pids+=($!)
for _ in $(seq 100); do [[ -s $work/display ]] && break; sleep 0.1; done
[[ -s $work/display ]] || { echo "capture $room: Xvfb did not start: $(cat "$work/xvfb.log")" >&2; exit 1; }
display=$(<"$work/display")
export DISPLAY=":$display"

# 2. The sound: a PulseAudio of its own with one null sink, `stage`; the
# browser plays into it and ffmpeg records its monitor. No sound card, no
# kernel module.
export PULSE_SERVER=unix:$work/pulse.sock PULSE_SINK=stage
pulseaudio --daemonize=no --exit-idle-time=-1 -n --disable-shm=yes \
  --load="module-native-protocol-unix socket=$work/pulse.sock auth-anonymous=1" \
  --load="module-null-sink sink_name=stage rate=48000 channels=2" \
  --load="module-always-sink" 2>"$work/pulse.log" &
pids+=($!)
for _ in $(seq 100); do [[ -S $work/pulse.sock ]] && break; sleep 0.1; done
[[ -S $work/pulse.sock ]] || { echo "capture $room: PulseAudio did not start: $(cat "$work/pulse.log")" >&2; exit 1; }

# 3. The browser, full screen, on a local page that moves on to the join
# URL (which then stays out of the browser's command line).
esc=$(sed -e 's/&/\&amp;/g' -e 's/"/\&quot;/g' -e 's/</\&lt;/g' "$inputs/join-url")
printf '<!DOCTYPE html><meta charset="utf-8"><meta http-equiv="refresh" content="0;url=%s"><title>venue capture</title>\n' "$esc" >"$work/start.html"
# shellcheck disable=SC2086 # CAPTURE_CHROMIUM_FLAGS is a list of flags
"$chromium" --user-data-dir="$work/profile" --kiosk --start-fullscreen \
  --window-size="${size/x/,}" --window-position=0,0 \
  --no-first-run --no-default-browser-check --noerrdialogs --disable-infobars \
  --hide-scrollbars --force-device-scale-factor=1 --disable-gpu \
  --autoplay-policy=no-user-gesture-required --use-fake-ui-for-media-stream \
  --password-store=basic --disable-dev-shm-usage --disable-background-networking \
  --disable-component-update --disable-sync --disable-features=Translate \
  ${CAPTURE_CHROMIUM_FLAGS:-} "file://$work/start.html" >"$work/chromium.log" 2>&1 &
pids+=($!)

# 4. The encoder: 720p30 H.264 + AAC, about 2.4 Mbit/s (the plan's 2.5).
ffmpeg -nostdin -hide_banner -loglevel warning \
  -thread_queue_size 1024 -f x11grab -draw_mouse 0 -framerate "$fps" -video_size "$size" -i "$DISPLAY.0+0,0" \
  -thread_queue_size 1024 -f pulse -i stage.monitor \
  -c:v libx264 -preset veryfast -tune zerolatency -pix_fmt yuv420p \
  -b:v "$vbitrate" -maxrate "$vbitrate" -bufsize 4600k -g "$gop" -keyint_min "$gop" -sc_threshold 0 \
  -c:a aac -b:a 128k -ar 48000 -ac 2 -af aresample=async=1 \
  -f flv -flvflags no_duration_filesize "$rtmp" &
pids+=($!)

echo "capture $room: display $DISPLAY, pushing to the origin" >&2
set +e
wait -n
status=$?
echo "capture $room: a process ended ($status); stopping the capture" >&2
for f in xvfb pulse chromium; do [[ -s $work/$f.log ]] && tail -n 5 "$work/$f.log" >&2; done
exit 1
