#!/usr/bin/env bash
# Debian packages the suite uses: promtool (prometheus) and docker-compose validate the deploy
# files offline. Installed when missing and we may (root with apt-get); otherwise said clearly.
set -euo pipefail
declare -A package_of=([promtool]=prometheus [docker-compose]=docker-compose)
missing=()
for tool in "${!package_of[@]}"; do
    command -v "$tool" >/dev/null 2>&1 || missing+=("${package_of[$tool]}")
done
[ ${#missing[@]} -eq 0 ] && exit 0
if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "installing ${missing[*]}" >&2
    apt-get update -qq
    # policy-rc.d 101: install the packages' files without starting their daemons.
    printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d && chmod +x /usr/sbin/policy-rc.d
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
    rm -f /usr/sbin/policy-rc.d
else
    echo "missing ${missing[*]} (apt-get install ${missing[*]}); the tests that need them will say so" >&2
fi
