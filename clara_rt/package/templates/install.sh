#!/bin/sh
# Install this clara-rt bundle offline: pipeline {{PIPELINE}}, clara-rt {{VERSION}},
# Python {{PYTHON}}, {{PLATFORM}}. Nothing is downloaded: every wheel is in wheelhouse/.
#
#   sh install.sh [--prefix DIR] [--python PYTHON] [--user NAME]
#
#   --prefix DIR     where venv/, etc/ and var/ go (default: this folder); keep this folder,
#                    the services read pipeline/ and register.sh from it
#   --python PYTHON  a Python {{PYTHON}} with the venv module (default: $PYTHON or python3)
#   --user NAME      the user the services run as (default: whoever runs this script)
#
# Steps: verify SHA256SUMS; check Python, CPU and glibc; create PREFIX/venv and install
# {{REQUIREMENT}} from wheelhouse/ only; copy config/ to PREFIX/etc/ (kept when it exists);
# write the systemd units to PREFIX/etc/systemd/; check the pipeline and adapter configuration.
set -eu

say() { printf 'install.sh: %s\n' "$*" >&2; }
die() { printf 'install.sh: error: %s\n' "$*" >&2; exit 1; }

BUNDLE=$(CDPATH='' cd -- "$(dirname -- "$0")" && pwd -P)
PREFIX=$BUNDLE
PYTHON=${PYTHON:-python3}
SERVICE_USER=$(id -un)
while [ $# -gt 0 ]; do
    case $1 in
        --prefix) [ $# -ge 2 ] || die "--prefix needs a folder"; PREFIX=$2; shift 2 ;;
        --prefix=*) PREFIX=${1#--prefix=}; shift ;;
        --python) [ $# -ge 2 ] || die "--python needs a program"; PYTHON=$2; shift 2 ;;
        --python=*) PYTHON=${1#--python=}; shift ;;
        --user) [ $# -ge 2 ] || die "--user needs a name"; SERVICE_USER=$2; shift 2 ;;
        --user=*) SERVICE_USER=${1#--user=}; shift ;;
        -h|--help) sed -n '2,16p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
        *) die "unknown argument '$1' (sh install.sh [--prefix DIR] [--python PYTHON] [--user NAME])" ;;
    esac
done

# Relative paths are relative to where the script was started.
case $PREFIX in
    /*) ;;
    *) PREFIX=$(pwd -P)/$PREFIX ;;
esac
case $PYTHON in
    /*) ;;
    */*) PYTHON=$(pwd -P)/$PYTHON ;;
esac

# 1. The files are the ones the bundle was written with.
cd "$BUNDLE"
if command -v sha256sum >/dev/null 2>&1; then
    SUMCHECK="sha256sum -c"
elif command -v shasum >/dev/null 2>&1; then
    SUMCHECK="shasum -a 256 -c"
else
    die "neither sha256sum nor shasum found: cannot verify the bundle"
fi
say "verifying $(wc -l < SHA256SUMS | tr -d ' ') files against SHA256SUMS"
if ! sums=$($SUMCHECK SHA256SUMS 2>&1); then
    printf '%s\n' "$sums" | grep -v ': OK$' >&2 || true
    die "the bundle is damaged (above): copy bundle.tar.gz again and unpack it"
fi

# 2. This machine can run the wheels.
command -v "$PYTHON" >/dev/null 2>&1 ||
    die "$PYTHON not found: install Python {{PYTHON}} (Debian/Ubuntu: apt-get install python{{PYTHON}} python{{PYTHON}}-venv) or pass --python"
problem=$("$PYTHON" - {{PYTHON}} {{ARCH}} {{GLIBC}} <<'EOF'
import os, platform, sys
python, arch, glibc = sys.argv[1:4]
have = "%d.%d" % sys.version_info[:2]
if have != python:
    print(f"this bundle is for Python {python}, {sys.executable} is Python {have}: pass "
          f"--python /path/to/python{python}")
elif platform.machine() != arch:
    print(f"this bundle is for {arch}, this machine is {platform.machine()}")
else:
    try:
        found = os.confstr("CS_GNU_LIBC_VERSION").split()[1]
    except (AttributeError, ValueError, OSError, IndexError):
        found = ""
    number = lambda text: tuple(int(x) for x in text.split(".")[:2])
    if not found or number(found) < number(glibc):
        print(f"this bundle needs glibc {glibc} or newer, this machine has "
              f"{found or 'none'}: build the bundle on an older system, or pass --platform "
              "manylinux_2_<minor>_<arch> to clara-rt package")
EOF
) || die "$PYTHON failed to start"
[ -z "$problem" ] || die "$problem"

case $PREFIX$BUNDLE in
    *[!A-Za-z0-9_./+,=-]*) die "the bundle and prefix paths may hold letters, digits and _ . / + , = - only (systemd units and sed use them): $BUNDLE, $PREFIX" ;;
esac

# 3. A virtual environment with the bundle's wheels and nothing else. The machine's pip
#    configuration (index, mirrors, constraints) is ignored: the wheelhouse is the only source.
mkdir -p "$PREFIX"
PREFIX=$(cd "$PREFIX" && pwd -P)
if [ -e "$PREFIX/venv" ]; then
    say "replacing $PREFIX/venv (stop the services first: systemctl stop clara-rt-dicom clara-rt)"
fi
"$PYTHON" -m venv --clear "$PREFIX/venv" ||
    die "$PYTHON -m venv failed (Debian/Ubuntu: apt-get install python{{PYTHON}}-venv)"
unset PIP_INDEX_URL PIP_EXTRA_INDEX_URL PIP_FIND_LINKS PIP_CONSTRAINT PIP_REQUIREMENT
export PIP_CONFIG_FILE=/dev/null PIP_NO_INDEX=1 PIP_DISABLE_PIP_VERSION_CHECK=1
say "installing {{REQUIREMENT}} ({{WHEELS}} wheels, {{WHEEL_MB}} MB) into $PREFIX/venv"
"$PREFIX/venv/bin/python" -m pip install --quiet --no-index --only-binary=:all: \
    --find-links "$BUNDLE/wheelhouse" '{{REQUIREMENT}}' ||
    die "pip could not install from $BUNDLE/wheelhouse (above)"

# 4. Settings (kept when they exist: they hold your edits), units, data folders.
mkdir -p "$PREFIX/etc/systemd" "$PREFIX/var/data" "$PREFIX/var/dicom" "$PREFIX/var/cache"
render() {
    sed -e "s|@PREFIX@|$PREFIX|g" -e "s|@BUNDLE@|$BUNDLE|g" -e "s|@USER@|$SERVICE_USER|g" "$1"
}
for name in server.env adapter.yaml; do
    if [ -e "$PREFIX/etc/$name" ]; then
        render "config/$name" > "$PREFIX/etc/$name.new"
        if cmp -s "$PREFIX/etc/$name" "$PREFIX/etc/$name.new"; then
            rm -f "$PREFIX/etc/$name.new"
        else
            say "kept $PREFIX/etc/$name; this bundle's version is $PREFIX/etc/$name.new"
        fi
    else
        render "config/$name" > "$PREFIX/etc/$name"
    fi
done
chmod 600 "$PREFIX/etc/server.env"  # it holds the API token
for unit in clara-rt.service clara-rt-dicom.service; do
    render "systemd/$unit" > "$PREFIX/etc/systemd/$unit"
done
if [ "$(id -u)" = 0 ] && [ "$SERVICE_USER" != root ]; then
    chown -R "$SERVICE_USER" "$PREFIX/var" "$PREFIX/etc/server.env"
fi

# 5. The installed clara-rt loads the pipeline and the adapter configuration.
PYTHONPATH=$BUNDLE/pipeline/operators "$PREFIX/venv/bin/clara-rt" validate \
    "$BUNDLE/pipeline/pipeline.yaml" >/dev/null || die "the installed clara-rt cannot load the pipeline (above)"
"$PREFIX/venv/bin/clara-rt" dicom --check --config "$PREFIX/etc/adapter.yaml" >/dev/null ||
    die "$PREFIX/etc/adapter.yaml is invalid (above)"

cat >&2 <<EOF
install.sh: installed clara-rt {{VERSION}} with pipeline {{PIPELINE}} into $PREFIX

Next:
  1. Edit $PREFIX/etc/server.env: set CLARA_RT_TOKEN (e.g. openssl rand -hex 16), the port
     and the limits; and $PREFIX/etc/adapter.yaml: where DICOM results go (destinations).
  2. Install and start the services (they run as $SERVICE_USER):
       sudo cp $PREFIX/etc/systemd/clara-rt.service $PREFIX/etc/systemd/clara-rt-dicom.service /etc/systemd/system/
       sudo systemctl daemon-reload
       sudo systemctl enable --now clara-rt.service clara-rt-dicom.service
  3. Check: systemctl status clara-rt clara-rt-dicom; journalctl -u clara-rt -f
       $PREFIX/venv/bin/clara-rt list pipelines --host http://127.0.0.1:8000
  Verify the bundle at any time: $PREFIX/venv/bin/clara-rt package --check $BUNDLE
EOF
