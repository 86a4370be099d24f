"""Fresh-machine set-up: the Makefile's Python and .venv, the system-package installer, and the test
session's broker vhost. Each script runs for real, with fake ``python``/``apt-get``/``id`` on PATH."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import tests.conftest as conftest

ROOT = Path(__file__).resolve().parents[2]
ENSURE_PYTHON = ROOT / "deploy" / "local" / "ensure-python.sh"
ENSURE_PACKAGES = ROOT / "deploy" / "local" / "ensure-system-packages.sh"
TOOLS = ("bash", "cat", "chmod", "mkdir", "mktemp", "mv", "rm", "touch")


def script(path: Path, body: str) -> Path:
    path.write_text("#!/bin/bash\n" + body)
    path.chmod(0o755)
    return path


@pytest.fixture
def fake_bin(tmp_path) -> Path:
    """A PATH of its own: the few real tools the scripts need, a fake ``id`` (root unless told) and
    an ``apt-get`` that logs its arguments."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for tool in TOOLS:
        (bin_dir / tool).symlink_to(shutil.which(tool))
    script(bin_dir / "id", 'echo "${FAKE_UID:-0}"\n')
    script(
        bin_dir / "apt-get", f'echo "$*" >> {tmp_path}/apt.log\n[ -z "${{APT_HOOK:-}}" ] || . "$APT_HOOK"\n'
    )
    return bin_dir


def run(command: list[str], bin_dir: Path, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        command, env={"PATH": str(bin_dir), **env}, capture_output=True, text=True, timeout=60
    )


def apt_log(tmp_path: Path) -> str:
    log = tmp_path / "apt.log"
    return log.read_text() if log.exists() else ""


# ensure-python.sh


def fake_python(bin_dir: Path, name: str, version: tuple[int, int], ensurepip_marker: Path | None = None):
    """A ``python`` of the given version; without ``ensurepip_marker`` on disk it lacks ensurepip
    (Debian without python3.11-venv)."""
    missing = (
        f'[ "$2" = "import ensurepip" ] && [ ! -e {ensurepip_marker} ] && exit 1\n'
        if ensurepip_marker
        else ""
    )
    script(
        bin_dir / name,
        missing
        + f'case "$2" in *version_info*) [ "{version[0]}.{version[1]}" = 3.11 ]; exit $?;; esac\n'
        + f'exec {sys.executable} "$@"\n',
    )


def test_python311_is_found_and_its_path_printed(fake_bin):
    fake_python(fake_bin, "python3.11", (3, 11))
    result = run([str(ENSURE_PYTHON)], fake_bin)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == sys.executable


def test_python3_is_used_when_it_is_311(fake_bin):
    fake_python(fake_bin, "python3", (3, 11))
    assert run([str(ENSURE_PYTHON)], fake_bin).returncode == 0


def test_no_python311_stops_with_how_to_get_it(fake_bin, tmp_path):
    fake_python(fake_bin, "python3", (3, 10))
    result = run([str(ENSURE_PYTHON)], fake_bin)
    assert result.returncode != 0 and result.stdout == ""
    assert "apt-get install python3.11 python3.11-venv" in result.stderr
    assert apt_log(tmp_path) == ""


def test_missing_ensurepip_is_installed_with_apt_when_root(fake_bin, tmp_path):
    marker = tmp_path / "venv-installed"
    fake_python(fake_bin, "python3.11", (3, 11), ensurepip_marker=marker)
    hook = script(tmp_path / "hook", f'case "$*" in *"install"*python3.11-venv*) touch {marker};; esac\n')
    result = run([str(ENSURE_PYTHON)], fake_bin, APT_HOOK=str(hook))
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == sys.executable
    assert "python3.11-venv" in apt_log(tmp_path)


def test_missing_ensurepip_without_root_says_what_to_install(fake_bin, tmp_path):
    fake_python(fake_bin, "python3.11", (3, 11), ensurepip_marker=tmp_path / "never")
    result = run([str(ENSURE_PYTHON)], fake_bin, FAKE_UID="1000")
    assert result.returncode != 0 and result.stdout == ""
    assert "ensurepip" in result.stderr and "apt-get install python3.11-venv" in result.stderr
    assert apt_log(tmp_path) == ""


# The Makefile's .venv


@pytest.fixture
def project(tmp_path) -> Path:
    """The Makefile in a scratch project whose ensure-python.sh names a fake interpreter."""
    project = tmp_path / "project"
    (project / "deploy" / "local").mkdir(parents=True)
    shutil.copy(ROOT / "Makefile", project)
    (project / "pyproject.toml").write_text("")
    python = script(
        tmp_path / "python",
        # -m venv DIR: makes DIR/bin, then a pip only if the fake venv module "has ensurepip".
        'mkdir -p "$3/bin"\n'
        '[ -n "${HAS_ENSUREPIP:-}" ] || { echo "ensurepip is not available" >&2; exit 1; }\n'
        'printf "#!/bin/bash\\nexit ${PIP_STATUS:-0}\\n" > "$3/bin/pip"; chmod +x "$3/bin/pip"\n',
    )
    script(project / "deploy" / "local" / "ensure-python.sh", f"echo {python}\n")
    return project


def make(project: Path, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        ["make", "-C", str(project), ".venv/.installed-stamp"],
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_a_failed_venv_is_not_left_behind(project):
    result = make(project)
    assert result.returncode != 0
    assert "ensurepip" in result.stderr
    assert not (project / ".venv").exists()


def test_a_half_made_venv_is_made_again(project):
    (project / ".venv" / "bin").mkdir(parents=True)  # an earlier failure's leftovers: no pip
    assert make(project).returncode != 0
    assert not (project / ".venv").exists()
    result = make(project, HAS_ENSUREPIP="1")
    assert result.returncode == 0, result.stderr
    assert (project / ".venv" / ".installed-stamp").exists()


def test_a_working_venv_is_kept_when_an_update_fails(project):
    assert make(project, HAS_ENSUREPIP="1").returncode == 0
    (project / ".venv" / ".installed-stamp").unlink()  # pyproject.toml changed
    result = make(project, HAS_ENSUREPIP="1", PIP_STATUS="1")
    assert result.returncode != 0
    assert (project / ".venv" / "bin" / "pip").exists()


# ensure-system-packages.sh: the machine's own policy-rc.d survives


@pytest.mark.parametrize("apt_fails", [False, True])
def test_an_existing_policy_rc_d_is_restored(fake_bin, tmp_path, apt_fails):
    policy = tmp_path / "policy-rc.d"
    policy.write_text("#!/bin/sh\n# the container's own\nexit 101\n")
    policy.chmod(0o755)
    hook = script(
        tmp_path / "hook",
        f'case "$*" in *install*) cp {policy} {tmp_path}/during; {"exit 100" if apt_fails else ""};; esac\n',
    )
    (fake_bin / "cp").symlink_to(shutil.which("cp"))
    result = run([str(ENSURE_PACKAGES)], fake_bin, APT_HOOK=str(hook), POLICY_RC_D=str(policy))
    assert (result.returncode != 0) == apt_fails, result.stderr
    assert "prometheus" in apt_log(tmp_path) and "docker-compose" in apt_log(tmp_path)
    assert (tmp_path / "during").read_text() == "#!/bin/sh\nexit 101\n"
    assert policy.read_text() == "#!/bin/sh\n# the container's own\nexit 101\n"
    assert os.access(policy, os.X_OK)
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith("policy-rc.d")) == ["policy-rc.d"]


def test_a_policy_rc_d_of_our_own_is_removed_again(fake_bin, tmp_path):
    policy = tmp_path / "policy-rc.d"
    result = run([str(ENSURE_PACKAGES)], fake_bin, POLICY_RC_D=str(policy))
    assert result.returncode == 0, result.stderr
    assert not policy.exists()


# tests/conftest.py: a broker vhost, or the default one


def test_vhost_falls_back_to_the_default_with_a_warning(monkeypatch):
    def refused(*args: str) -> None:
        raise subprocess.CalledProcessError(2, ["rabbitmqctl", *args], stderr=b"access refused")

    monkeypatch.setattr(conftest, "_rabbitmqctl", refused)
    with pytest.warns(UserWarning, match="default vhost"):
        assert conftest.make_test_vhost() is None
