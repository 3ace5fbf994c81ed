"""Exports of what a page shows: PNGs in a ZIP, and one self-contained HTML report."""

from __future__ import annotations

import base64
import html
import io
import json
import re
import zipfile
from dataclasses import dataclass, field
from datetime import UTC, datetime

import numpy as np
from PIL import Image


def png(rgb: np.ndarray) -> bytes:
    """Return an RGB (or grey) uint8 array encoded as PNG (fast compression: these are exports)."""
    buf = io.BytesIO()
    Image.fromarray(rgb).save(buf, format="PNG", compress_level=1)
    return buf.getvalue()


def _file_name(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", text).strip("._") or "image"


def zip_of_pngs(pictures: dict[str, np.ndarray]) -> bytes:
    """Return a ZIP holding one PNG per named picture (names made safe, kept unique)."""
    buf = io.BytesIO()
    used: set[str] = set()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, rgb in pictures.items():
            base = _file_name(name)
            unique, n = base, 1
            while unique in used:
                n += 1
                unique = f"{base}_{n}"
            used.add(unique)
            archive.writestr(f"{unique}.png", png(rgb))
    return buf.getvalue()


@dataclass
class Section:
    """A heading, some text, a table of figures and pictures with captions."""

    heading: str
    text: str = ""
    figures: dict[str, object] = field(default_factory=dict)
    pictures: list[tuple[str, np.ndarray]] = field(default_factory=list)


def html_report(title: str, sections: list[Section], card: dict | None = None) -> str:
    """Return one HTML page with every picture embedded: it opens anywhere, offline."""
    esc = html.escape
    parts = [
        "<!doctype html><html><head><meta charset='utf-8'>",
        f"<title>{esc(title)}</title><style>",
        "body{font-family:system-ui,sans-serif;margin:2em;max-width:1200px}",
        "figure{display:inline-block;margin:0 1em 1em 0;vertical-align:top}",
        "figure img{max-width:360px;display:block}figcaption{font-size:.85em;color:#444}",
        "table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:.2em .6em;text-align:left}",
        "pre{background:#f6f6f6;padding:1em;overflow:auto}</style></head><body>",
        f"<h1>{esc(title)}</h1>",
        f"<p><small>{datetime.now(UTC):%Y-%m-%d %H:%M} UTC</small></p>",
    ]
    for section in sections:
        parts.append(f"<h2>{esc(section.heading)}</h2>")
        if section.text:
            parts.append(f"<p>{esc(section.text)}</p>")
        if section.figures:
            rows = "".join(
                f"<tr><th>{esc(str(k))}</th><td>{esc(str(v))}</td></tr>" for k, v in section.figures.items()
            )
            parts.append(f"<table>{rows}</table>")
        for caption, rgb in section.pictures:
            data = base64.b64encode(png(rgb)).decode()
            parts.append(
                f"<figure><img src='data:image/png;base64,{data}' alt='{esc(caption)}'>"
                f"<figcaption>{esc(caption)}</figcaption></figure>"
            )
    if card:
        parts.append("<h2>Model card</h2><pre>" + esc(json.dumps(card, indent=2)) + "</pre>")
    parts.append("</body></html>")
    return "\n".join(parts)
