"""Run one CASA tclean call and export its products (child-process entry).

Run as ``<python with casatasks> _tclean_child.py SPEC.json`` by
`dsa110_contimg.tools.tclean`. It needs only the standard library and
casatasks, so the interpreter may be a separate CASA installation, and a CASA
crash kills this process, not the pipeline worker. ``SPEC.json`` holds
``tclean`` (the keyword arguments), ``export`` ({casa image: FITS path}),
``casa_log`` and ``result`` (where to write a JSON summary). The major
cycles' starting peak residuals (tclean's ``summaryminor`` ``startPeakRes``)
are printed as one ``DSA_TCLEAN_PEAKS <json>`` line for the quality gates.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

__all__ = ["main"]


def main(argv: list[str]) -> int:
    """Run the tclean call described in ``argv[0]``; return the exit status."""
    spec = json.loads(Path(argv[0]).read_text())
    if os.environ.get("CASASITECONFIG"):
        # started by the pipeline with its own CASA site configuration: give
        # casaconfig an argv it cannot misread and no user-global config
        sys.argv = [sys.argv[0], "--noconfig"]
    import casatasks
    import casatools

    casatasks.casalog.setlogfile(spec["casa_log"])
    summary = casatasks.tclean(**spec["tclean"])
    missing = [name for name in spec["export"] if not Path(name).exists()]
    if missing:
        print(f"tclean produced no {missing}", file=sys.stderr)
        return 2
    for name, fits_path in spec["export"].items():
        casatasks.exportfits(
            imagename=name, fitsimage=fits_path, overwrite=True, dropdeg=False
        )
    summary = summary if isinstance(summary, dict) else {}
    peaks = _start_peaks(summary.get("summaryminor"))
    record = {"start_peaks_jy": peaks, "hit_niter": summary.get("stopcode") == 1}
    print("DSA_TCLEAN_PEAKS " + json.dumps(record), flush=True)
    result = {
        "version": "CASA " + casatools.version_string(),
        "stop": str(summary.get("stopDescription", "")),
        "iterdone": int(summary.get("iterdone", 0)),
        "nmajordone": int(summary.get("nmajordone", 0)),
    }
    Path(spec["result"]).write_text(json.dumps(result))
    return 0


def _start_peaks(minor: object) -> list[float]:
    """Return the peak residual at the start of each major cycle (first plane).

    ``summaryminor`` is ``{field: {channel: {stokes: {key: {cycle: value}}}}}``
    (CASA 6.5+); ``startPeakRes`` is used, else ``peakRes`` (the peak at the
    end of each minor cycle).
    """
    keys = ("startPeakRes", "peakRes")
    while isinstance(minor, dict) and minor and not any(k in minor for k in keys):
        minor = minor[sorted(minor)[0]]
    if not isinstance(minor, dict):
        return []
    values = next((minor[k] for k in keys if k in minor), [])
    if isinstance(values, dict):
        values = [values[k] for k in sorted(values)]
    return [float(p) for p in values]


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
