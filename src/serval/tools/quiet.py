"""Keep the converters' and onnxruntime's own warnings out of the tools' output.

The tools report what happened in their own words; onnxruntime's C++ logger (a hint to
pre-process before quantizing, a note on hardware-specific optimizations), the quantizer's
``logging.warning`` calls on the root logger and the converters' Python warnings would only
interleave with that report, or (the root logger) install a handler for good.
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

ORT_ERRORS_ONLY = 3  # onnxruntime's severities: 0 verbose, 1 info, 2 warning, 3 error, 4 fatal


@contextmanager
def quiet_converters() -> Iterator[None]:
    """Silence Python warnings and log records below ERROR while the block runs."""
    root = logging.getLogger()
    # A handler on the root logger stops `logging.warning()` from calling basicConfig().
    placeholder = logging.NullHandler()
    root.addHandler(placeholder)
    previous = logging.root.manager.disable
    logging.disable(logging.WARNING)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        logging.disable(previous)
        root.removeHandler(placeholder)


def quiet_onnxruntime(ort: Any) -> Any:
    """Session options logging errors only; also lowers onnxruntime's default logger."""
    ort.set_default_logger_severity(ORT_ERRORS_ONLY)
    options = ort.SessionOptions()
    options.log_severity_level = ORT_ERRORS_ONLY
    return options
