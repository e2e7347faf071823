"""Data embedded in the report's one HTML file: JSON safe inside a script block, and text packed
(gzip, base64) for the page to unpack on demand."""

from __future__ import annotations

import base64
import gzip

from skylab.jsontext import json_text


def script_json(value: object) -> str:
    """JSON to put inside <script type="application/json">: no "<" or ">" survives, so no
    "</script>" in a trial's text can end the block."""
    return json_text(value).replace("<", "\\u003c").replace(">", "\\u003e")


def packed(text: str) -> str:
    """Text gzip-compressed and base64-encoded, for a data block the page unpacks with
    DecompressionStream. Base64 holds no "<", so nothing in it can end the script."""
    return base64.b64encode(gzip.compress(text.encode("utf-8"), compresslevel=6, mtime=0)).decode("ascii")
