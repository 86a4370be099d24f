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
