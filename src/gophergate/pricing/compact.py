"""``python -m gophergate.pricing.compact MIN_MODELS``: a models.dev document on stdin -> the compact catalogue
(``marshal`` of ``(model_count, CompactCatalog)``) on stdout; exit 2 with the reason on stderr when it is not a
usable catalogue or lists fewer than MIN_MODELS models.

The server parses registry downloads here, in a short-lived child process: the full document becomes ~45 MB of
Python objects while it is parsed, and a long-running worker would keep most of that memory (fragmented
arenas) for good; the compact result it loads instead is a few MB.
"""

from __future__ import annotations

import marshal
import sys

import orjson

from gophergate.pricing.catalog import MARSHAL_VERSION, CatalogError, compact_document


def compact_bytes(body: bytes, min_models: int = 0) -> bytes:
    try:
        doc = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise CatalogError(f"not valid JSON ({exc})") from None
    models = compact_document(doc)
    count = sum(len(m) for m in models.values())
    if count < min_models:
        raise CatalogError(f"only {count} models against {min_models} expected at least (partial download?)")
    return marshal.dumps((count, models), MARSHAL_VERSION)


def main(argv: list[str]) -> int:
    min_models = int(argv[1]) if len(argv) > 1 else 0
    try:
        out = compact_bytes(sys.stdin.buffer.read(), min_models)
    except CatalogError as exc:
        sys.stderr.write(str(exc))
        return 2
    sys.stdout.buffer.write(out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv))
