"""A per-block HTML summary: one self-contained file a person opens in a browser.

Every picture is embedded as a ``data:`` URI and the style sheet is inline, so
the page needs no network and no other file; previews are embedded as JPEG
(images and residuals at most 900 pixels, mosaics 2000), calibration plots as
PNG. Sections: outcome and failures,
calibration (the calibrator used, its QA plots), flagged fractions, images
(rms against the radiometer prediction, dynamic range, previews), the mosaic
and the sources measured.
"""

from __future__ import annotations

import base64
import html
import io
import math
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

__all__ = ["write_block_summary"]

_THUMB_PX = 900
"""Largest side of an embedded image or residual preview (pixels)."""
_MOSAIC_PX = 2000
"""Largest side of an embedded mosaic preview (pixels)."""
_STYLE = """
body{font-family:sans-serif;margin:1.5em;color:#222;max-width:1800px}
h1{font-size:1.5em}h2{border-bottom:1px solid #ccc;margin-top:1.6em}
table{border-collapse:collapse;margin:.5em 0}td,th{border:1px solid #ccc;
padding:.2em .6em;text-align:right}th{background:#f0f0f0}td.l,th.l{text-align:left}
.ok{color:#070;font-weight:bold}.bad{color:#b00;font-weight:bold}
figure{display:inline-block;margin:.4em;vertical-align:top}
figure img{max-width:100%;border:1px solid #ddd}figcaption{font-size:.85em}
"""


def _encoded(path: Path, max_px: int | None) -> tuple[str, bytes]:
    """Return (MIME type, bytes) to embed: the PNG, or a JPEG of at most ``max_px``.

    Previews of noisy images compress poorly as PNG (megabytes each); a block
    has one per image, so they are embedded as JPEG (quality 88), scaled
    down to ``max_px``; the full-size PNG stays beside the image.
    """
    if max_px is None:
        return "image/png", path.read_bytes()
    try:
        from PIL import Image
    except ImportError:  # Pillow comes with matplotlib; without it embed the PNG
        return "image/png", path.read_bytes()
    with Image.open(path) as picture:
        picture = picture.convert("RGB")
        picture.thumbnail((max_px, max_px), Image.Resampling.LANCZOS)
        buffer = io.BytesIO()
        picture.save(buffer, format="JPEG", quality=88)
    return "image/jpeg", buffer.getvalue()


def _img(path: object, caption: str, *, max_px: int | None = None) -> str:
    if not path or not Path(str(path)).is_file():
        return f"<p>{html.escape(caption)}: (not written)</p>"
    mime, raw = _encoded(Path(str(path)), max_px)
    data = base64.b64encode(raw).decode("ascii")
    return (
        f'<figure><img alt="{html.escape(caption)}" '
        f'src="data:{mime};base64,{data}"><figcaption>{html.escape(caption)}'
        f"<br><code>{html.escape(str(path))}</code></figcaption></figure>"
    )


def _fmt(value: object, spec: str = ".4g", scale: float = 1.0) -> str:
    if value is None:
        return "-"
    if isinstance(value, float | int) and not isinstance(value, bool):
        number = float(value) * scale
        return "-" if not math.isfinite(number) else format(number, spec)
    return html.escape(str(value))


def _table(headers: Sequence[str], rows: Iterable[Sequence[str]], left: int = 1) -> str:
    head = "".join(
        f'<th class="{"l" if i < left else ""}">{html.escape(h)}</th>'
        for i, h in enumerate(headers)
    )
    body = "".join(
        "<tr>"
        + "".join(
            f'<td class="{"l" if i < left else ""}">{c}</td>' for i, c in enumerate(r)
        )
        + "</tr>"
        for r in rows
    )
    return f"<table><tr>{head}</tr>{body}</table>"


def _outcome(s: Mapping) -> str:
    state = (
        '<span class="ok">OK</span>'
        if s.get("success")
        else ('<span class="bad">FAILED</span>')
    )
    out = [
        f"<p>{state} &mdash; {len(s.get('images', []))} image(s), "
        f"{_fmt(s.get('processing_time_s'), '.1f')} s; data "
        f"{_fmt(s.get('start_iso'))} to {_fmt(s.get('end_iso'))} UTC</p>"
    ]
    errors = s.get("errors") or []
    if errors:
        out.append("<h2>Failures</h2><ul>")
        out += [f"<li>{html.escape(str(e))}</li>" for e in errors]
        out.append("</ul>")
    return "".join(out)


def _calibration(s: Mapping) -> str:
    cal = s.get("calibration") or []
    if not cal:
        return "<h2>Calibration</h2><p>not calibrated in this run</p>"
    rows = [
        [
            html.escape(Path(c["ms"]).name),
            _fmt(c.get("calibrator")),
            _fmt(c.get("group_id")),
            _fmt(c.get("refant")),
            _fmt(c.get("bandpass_flagged_fraction"), ".1f", 100.0),
            _fmt(c.get("gain_flagged_fraction"), ".1f", 100.0),
        ]
        for c in cal
    ]
    parts = [
        "<h2>Calibration</h2>",
        _table(
            [
                "MS",
                "calibrator",
                "solved on group",
                "refant",
                "bandpass flagged %",
                "gain flagged %",
            ],
            rows,
        ),
    ]
    parts += [_img(p, Path(p).name) for p in s.get("calibration_plots", [])]
    return "".join(parts)


def _flags(s: Mapping) -> str:
    flags = s.get("flags") or []
    if not flags:
        return ""
    rows = [
        [
            html.escape(Path(f["ms"]).name),
            _fmt(f.get("total_fraction"), ".2f", 100.0),
            _fmt(f.get("rfi_fraction"), ".2f", 100.0),
            html.escape(", ".join(f.get("dead_antennas") or []) or "none"),
        ]
        for f in flags
    ]
    return "<h2>Flagging</h2>" + _table(
        ["MS", "flagged %", "RFI %", "dead antennas"], rows
    )


def _images(s: Mapping) -> str:
    images = s.get("images") or []
    if not images:
        return "<h2>Images</h2><p>no image</p>"
    rows = [
        [
            html.escape(Path(i["image"]).name),
            _fmt(i.get("rms_jy"), ".3g", 1e3),
            _fmt(i.get("thermal_rms_jy"), ".3g", 1e3),
            _fmt(i.get("rms_over_thermal"), ".2f"),
            _fmt(i.get("peak_jy"), ".4g"),
            _fmt(i.get("dynamic_range"), ".0f"),
        ]
        for i in images
    ]
    parts = [
        "<h2>Images</h2>",
        _table(
            [
                "image",
                "rms (mJy/beam)",
                "thermal (mJy/beam)",
                "rms / thermal",
                "peak (Jy/beam)",
                "dynamic range",
            ],
            rows,
        ),
        "<p>rms: robust (MAD) rms of the residual; thermal: radiometer equation for "
        "the unflagged samples, natural weighting.</p>",
    ]
    for i in images:
        name = Path(i["image"]).name
        parts.append(_img(i.get("preview"), f"{name}: image", max_px=_THUMB_PX))
        parts.append(
            _img(i.get("residual_preview"), f"{name}: residual", max_px=_THUMB_PX)
        )
        if i.get("pb_preview"):
            parts.append(
                _img(i["pb_preview"], f"{name}: primary beam", max_px=_THUMB_PX // 2)
            )
    return "".join(parts)


def _mosaic(s: Mapping) -> str:
    mosaic = s.get("mosaic") or {}
    if not mosaic:
        return ""
    return (
        "<h2>Mosaic</h2>"
        + _img(
            mosaic.get("sources_preview"),
            "mosaic with measured sources",
            max_px=_MOSAIC_PX,
        )
        + _img(mosaic.get("preview"), "mosaic", max_px=_MOSAIC_PX)
    )


def _sources(s: Mapping) -> str:
    sources = s.get("sources") or []
    if not sources:
        return "<h2>Sources measured</h2><p>none</p>"
    rows = [
        [
            _fmt(r.get("source_name")),
            _fmt(r.get("ra_deg"), ".5f"),
            _fmt(r.get("dec_deg"), ".5f"),
            _fmt(r.get("flux_jy"), ".4g"),
            _fmt(r.get("flux_err_jy"), ".2g"),
            _fmt(r.get("snr"), ".1f"),
            _fmt(r.get("image_kind")),
        ]
        for r in sources
    ]
    return f"<h2>Sources measured ({len(sources)})</h2>" + _table(
        ["source", "RA (deg)", "Dec (deg)", "flux (Jy)", "error (Jy)", "SNR", "on"],
        rows,
    )


def write_block_summary(summary: Mapping[str, object], path: Path) -> Path:
    """Write the block's HTML summary page (self-contained) and return ``path``.

    Parameters
    ----------
    summary : mapping
        ``block_id``, ``success``, ``processing_time_s``, ``start_iso``,
        ``end_iso``, ``errors`` (list of str); ``calibration`` (list of
        mappings: ``ms``, ``calibrator``, ``group_id``, ``refant``,
        ``bandpass_flagged_fraction``, ``gain_flagged_fraction``);
        ``calibration_plots`` (PNG paths); ``flags`` (``ms``,
        ``total_fraction``, ``rfi_fraction``, ``dead_antennas``); ``images``
        (``image``, ``preview``, ``residual_preview``, ``rms_jy``,
        ``thermal_rms_jy``, ``rms_over_thermal``, ``peak_jy``,
        ``dynamic_range``); ``mosaic`` (``preview``, ``sources_preview``);
        ``sources`` (photometry rows as mappings). Missing keys are shown as
        absent.
    path : Path
        Output file; written under a temporary name, then renamed.
    """
    title = f"DSA-110 block {summary.get('block_id', '?')}"
    page = (
        '<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">'
        f"<title>{html.escape(title)}</title><style>{_STYLE}</style></head><body>"
        f"<h1>{html.escape(title)}</h1>"
        + _outcome(summary)
        + _calibration(summary)
        + _flags(summary)
        + _images(summary)
        + _mosaic(summary)
        + _sources(summary)
        + "</body></html>\n"
    )
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    from dsa110_contimg.utils.storage import publish, temporary_path

    tmp = temporary_path(path)
    try:
        tmp.write_text(page, encoding="utf-8")
        publish(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path
