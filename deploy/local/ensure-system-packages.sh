#!/usr/bin/env bash
# Debian packages the platform and its suite use, installed when missing and we may (root with
# apt-get); otherwise said clearly. `ensure-system-packages.sh run` (make run): only what the services
# need, ffmpeg to decode recordings. Without an argument (make test) also what the tests use:
# promtool (prometheus) and docker-compose validate the deploy files offline; espeak-ng speaks the
# test clips, sox with libsox-fmt-all writes AMR-NB ones; chromium (driven by Playwright, with
# chromium-driver for WebDriver) runs the reference pages' browser tests, and the Noto Tibetan and
# WenQuanYi fonts let their screenshots show Tibetan and Chinese.
set -euo pipefail
has_amr_nb() { [[ "$(sox --help-format amr-nb 2>/dev/null)" == *"Format: amr-nb"* ]]; }
has_tibetan_font() { [[ "$(fc-list 2>/dev/null)" == *"Noto Serif Tibetan"* ]]; }
has_chinese_font() { [[ "$(fc-list 2>/dev/null)" == *"WenQuanYi Micro Hei"* ]]; }
declare -A probe_of=([ffmpeg]="command -v ffmpeg")
if [ "${1:-test}" != run ]; then
    probe_of+=(
        [prometheus]="command -v promtool"
        [docker-compose]="command -v docker-compose"
        [espeak-ng]="command -v espeak-ng"
        [sox]="command -v sox"
        [libsox-fmt-all]=has_amr_nb
        [chromium]="command -v chromium"
        [chromium-driver]="command -v chromedriver"
        [fonts-noto-core]=has_tibetan_font
        [fonts-wqy-microhei]=has_chinese_font
    )
fi
missing=()
for package in "${!probe_of[@]}"; do
    ${probe_of[$package]} >/dev/null 2>&1 || missing+=("$package")
done
[ ${#missing[@]} -eq 0 ] && exit 0
if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "installing ${missing[*]}" >&2
    apt-get update -qq
    # policy-rc.d 101: install the packages' files without starting their daemons. The machine's
    # own policy-rc.d (e.g. a container's) is put back afterwards, even if apt-get fails.
    policy=${POLICY_RC_D:-/usr/sbin/policy-rc.d}  # overridable for the tests
    backup=""
    if [ -e "$policy" ] || [ -L "$policy" ]; then
        backup=$(mktemp "$policy.lianhu-backup.XXXXXX")
        mv -f "$policy" "$backup"
    fi
    restore_policy() { if [ -n "$backup" ]; then mv -f "$backup" "$policy"; else rm -f "$policy"; fi; }
    trap restore_policy EXIT
    printf '#!/bin/sh\nexit 101\n' > "$policy" && chmod +x "$policy"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
else
    echo "missing ${missing[*]} (apt-get install ${missing[*]}); the tests that need them will say so" >&2
fi
