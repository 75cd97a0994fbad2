"""ijson's C backend, and nothing else.

The pure-Python backend is ~50x slower and has no place in a pipeline that
promises orjson-class throughput, so it is never used as a fallback: a missing
C extension is a deployment error reported as such.
"""

from __future__ import annotations

from .errors import ExportError

try:  # importing this package must not fail on a machine without the wheel
    import ijson
    import ijson.backends.yajl2_c as _yajl2_c  # noqa: F401  (explicit: never the python one)

    yajl2_c = ijson.get_backend("yajl2_c")
    JSONError: type[Exception] = ijson.common.JSONError
    IncompleteJSONError: type[Exception] = ijson.common.IncompleteJSONError
except Exception:  # ImportError, or ijson's own error when the .so will not load
    ijson = None  # type: ignore[assignment]
    yajl2_c = None
    JSONError = IncompleteJSONError = type("NoIjsonError", (Exception,), {})


def require_c_backend() -> None:
    """Raise ExportError("no_c_backend") unless ijson runs on yajl2_c."""
    if yajl2_c is None or ijson is None or ijson.backend != "yajl2_c":
        found = getattr(ijson, "backend", None) if ijson is not None else "ijson not installed"
        raise ExportError(
            "no_c_backend",
            f"ijson C backend (yajl2_c) is not available (found: {found}); "
            "install a binary wheel of ijson (pip install --only-binary ijson ijson)",
        )
