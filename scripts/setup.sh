#!/usr/bin/env bash
# Install everything dsa110-contimg needs on a Debian 12 machine; idempotent.
#   Debian packages: wsclean, casacore-data (measures), aoflagger, python3-venv,
#                    chromium (headless: the test of the HTML block summaries);
#                    promtool from Debian's prometheus package, unpacked into
#                    .venv/bin (the alert rules' tests; no Prometheus service);
#                    chromium-driver (the browser tests of the web pages)
#   Python packages: this project with all extras (the api extra: FastAPI,
#                    uvicorn with uvloop and httptools, prometheus-client,
#                    jinja2 for 'serve'; the browser
#                    extra: selenium), in ./.venv
#   CASA: checks that it starts offline with the installation's own site
#         configuration (nothing is written to ~/.casa)
set -euo pipefail
cd "$(dirname "$0")/.."

apt_pkgs=()
command -v wsclean >/dev/null 2>&1 || apt_pkgs+=(wsclean)
[ -d /usr/share/casacore/data/geodetic ] || apt_pkgs+=(casacore-data)
command -v aoflagger >/dev/null 2>&1 || apt_pkgs+=(aoflagger)
command -v chromium >/dev/null 2>&1 || apt_pkgs+=(chromium)
command -v redis-server >/dev/null 2>&1 || apt_pkgs+=(redis-server)  # queue.backend redis
# PostgreSQL server binaries for the scale-out state backend and its tests
# (Debian puts them in /usr/lib/postgresql/<ver>/bin, not on PATH)
compgen -G "/usr/lib/postgresql/*/bin/initdb" >/dev/null || command -v initdb >/dev/null 2>&1 \
    || apt_pkgs+=(postgresql)
command -v chromedriver >/dev/null 2>&1 || apt_pkgs+=(chromium-driver)
python3 -c "import ensurepip, venv" >/dev/null 2>&1 || apt_pkgs+=(python3-venv)
if [ ${#apt_pkgs[@]} -gt 0 ]; then
    sudo=""
    [ "$(id -u)" -ne 0 ] && sudo="sudo"
    echo "setup: installing Debian packages: ${apt_pkgs[*]}" >&2
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${apt_pkgs[@]}" >/dev/null
fi

[ -x .venv/bin/python ] || python3 -m venv .venv

# promtool (checks monitoring/alerts.yml): only the binary of Debian's
# prometheus package, so that no Prometheus server is installed or started
if ! command -v promtool >/dev/null 2>&1 && [ ! -x .venv/bin/promtool ]; then
    echo "setup: unpacking promtool (Debian package prometheus) into .venv/bin" >&2
    sudo=""
    [ "$(id -u)" -ne 0 ] && sudo="sudo"
    deb_dir="$(mktemp -d)"
    if (cd "$deb_dir" && { apt-get download -qq prometheus 2>/dev/null \
            || { $sudo apt-get update -qq && apt-get download -qq prometheus; }; }); then
        dpkg-deb --fsys-tarfile "$deb_dir"/prometheus_*.deb \
            | tar -x -C "$deb_dir" ./usr/bin/promtool
        install -m 0755 "$deb_dir/usr/bin/promtool" .venv/bin/promtool
    else
        echo "setup: promtool unavailable; the rule tests check the YAML only" >&2
    fi
    rm -rf "$deb_dir"
fi
stamp=".venv/.installed-$(sha256sum pyproject.toml | cut -c1-16)"
if [ ! -f "$stamp" ]; then
    echo "setup: installing Python packages into .venv" >&2
    .venv/bin/python -m pip install -q --upgrade pip >/dev/null
    .venv/bin/python -m pip install -q -e ".[all]"
    touch "$stamp"
fi

# CASA: this installation carries its own offline site configuration
# (src/dsa110_contimg/data/casasiteconfig.py, measures from casadata); the
# pipeline points CASASITECONFIG at it and never reads ~/.casa/config.py.
# Check that CASA starts with it from an empty HOME (nothing user-global).
empty_home="$(mktemp -d)"
if ! HOME="$empty_home" .venv/bin/python -c \
    'from dsa110_contimg._casa import casa_version; print("setup: CASA", casa_version())' >&2; then
    rm -rf "$empty_home"
    echo "setup: CASA does not start with this installation's site configuration" >&2
    exit 1
fi
rm -rf "$empty_home"
old_cfg="${HOME}/.casa/config.py"
if [ -f "$old_cfg" ] && grep -q "^# written by dsa110-contimg scripts/setup.sh" "$old_cfg"; then
    echo "setup: note: $old_cfg (written by an older setup.sh) is no longer used by dsa110-contimg" >&2
fi
echo "setup: ok ($(wsclean --version 2>/dev/null | grep -m1 -i version))" >&2
