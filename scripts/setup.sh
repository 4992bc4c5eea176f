#!/usr/bin/env bash
# Install everything dsa110-contimg needs on a Debian 12 machine; idempotent.
#   Debian packages: wsclean, casacore-data (measures), aoflagger, python3-venv,
#                    chromium (headless: the test of the HTML block summaries)
#   Python packages: this project with all extras, in ./.venv
#   CASA: an offline configuration (~/.casa/config.py) pointing at casadata
set -euo pipefail
cd "$(dirname "$0")/.."

apt_pkgs=()
command -v wsclean >/dev/null 2>&1 || apt_pkgs+=(wsclean)
[ -d /usr/share/casacore/data/geodetic ] || apt_pkgs+=(casacore-data)
command -v aoflagger >/dev/null 2>&1 || apt_pkgs+=(aoflagger)
command -v chromium >/dev/null 2>&1 || apt_pkgs+=(chromium)
python3 -c "import ensurepip, venv" >/dev/null 2>&1 || apt_pkgs+=(python3-venv)
if [ ${#apt_pkgs[@]} -gt 0 ]; then
    sudo=""
    [ "$(id -u)" -ne 0 ] && sudo="sudo"
    echo "setup: installing Debian packages: ${apt_pkgs[*]}" >&2
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${apt_pkgs[@]}" >/dev/null
fi

[ -x .venv/bin/python ] || python3 -m venv .venv
stamp=".venv/.installed-$(sha256sum pyproject.toml | cut -c1-16)"
if [ ! -f "$stamp" ]; then
    echo "setup: installing Python packages into .venv" >&2
    .venv/bin/python -m pip install -q --upgrade pip >/dev/null
    .venv/bin/python -m pip install -q -e ".[all]"
    touch "$stamp"
fi

# CASA must stay offline and find its data (casadata) without downloading.
# A config written by another checkout's setup is refreshed to point at this one.
casa_cfg="${HOME}/.casa/config.py"
marker="# written by dsa110-contimg scripts/setup.sh"
datapath="$(.venv/bin/python -c 'import casadata; print(casadata.datapath)')"
if [ ! -f "$casa_cfg" ] || { grep -q "^$marker" "$casa_cfg" && ! grep -q "\"$datapath\"" "$casa_cfg"; }; then
    mkdir -p "$(dirname "$casa_cfg")"
    cat > "$casa_cfg" <<CFG
$marker: keep CASA offline
datapath = ["${datapath}"]
measurespath = "${datapath}"
measures_auto_update = False
data_auto_update = False
nologfile = True
CFG
    echo "setup: wrote $casa_cfg" >&2
fi
echo "setup: ok ($(wsclean --version 2>/dev/null | grep -m1 -i version))" >&2
