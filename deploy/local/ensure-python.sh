#!/usr/bin/env bash
# Print the path of a Python 3.11 that can make a virtualenv (the Makefile builds .venv with it).
# Tries $PYTHON if set, else python3.11 then python3; on Debian/Ubuntu without the venv module
# (ensurepip), installs python3.11-venv when root, otherwise says how to get it.
set -euo pipefail
WANT=3.11

is_wanted() {
    "$1" -c "import sys; sys.exit(sys.version_info[:2] != (${WANT/./, }))" 2>/dev/null
}

# An interpreter named explicitly (make PYTHON=...) is the only one tried.
if [ -n "${PYTHON:-}" ]; then candidates=("$PYTHON"); else candidates=("python$WANT" python3); fi
python=""
for candidate in "${candidates[@]}"; do
    if command -v "$candidate" >/dev/null 2>&1 && is_wanted "$candidate"; then
        python=$(command -v "$candidate")
        break
    fi
done
if [ -z "$python" ]; then
    cat >&2 <<MSG
Python $WANT is needed and none was found (tried: ${candidates[*]}).
Debian/Ubuntu: apt-get install python$WANT python$WANT-venv
Elsewhere: install Python $WANT (e.g. with pyenv) and put python$WANT on PATH, or run make PYTHON=/path/to/python$WANT
MSG
    exit 1
fi

# Debian ships ensurepip separately; without it "python -m venv" fails after half-making the venv.
has_ensurepip() { "$python" -c "import ensurepip" 2>/dev/null; }
if ! has_ensurepip; then
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
        echo "installing python$WANT-venv (ensurepip) for $python" >&2
        apt-get update -qq >&2
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "python$WANT-venv" >&2
    fi
    if ! has_ensurepip; then
        echo "$python cannot make a virtualenv: ensurepip is missing." >&2
        echo "Debian/Ubuntu: apt-get install python$WANT-venv (as root)" >&2
        exit 1
    fi
fi
"$python" -c "import sys; print(sys.executable)"
