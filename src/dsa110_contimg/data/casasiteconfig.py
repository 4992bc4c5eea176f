# CASA site configuration of this dsa110-contimg installation.
#
# The pipeline points CASASITECONFIG at this file (dsa110_contimg._casa) for
# its own processes and every CASA child it starts, and imports CASA with
# --noconfig, so no user-global file (~/.casa/config.py) is read. CASA stays
# offline and takes its measures and data from the casadata package of the
# interpreter that runs it, else from Debian's casacore-data.
#
# When this installation has built its own data directory (casadata with a
# corrected observatory table, see dsa110_contimg/_casa_data.py), CASA uses it.
import os as _os
import sys as _sys

_path = None
_overlay = _os.path.join(_sys.prefix, "share", "dsa110_contimg", "casa-data")
if _os.path.isfile(_os.path.join(_overlay, "DSA110_CASA_DATA")):
    _path = _overlay
else:
    try:
        import casadata as _casadata

        _path = _casadata.datapath
    except ImportError:
        if _os.path.isdir("/usr/share/casacore/data/geodetic"):
            _path = "/usr/share/casacore/data"

if _path is not None:
    measurespath = _path
    datapath = [_path]
measures_auto_update = False
data_auto_update = False
nologfile = True
logfile = _os.devnull
