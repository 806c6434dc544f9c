"""Quiet third-party log noise that tells users nothing (call before the first face detector starts).

protobuf warns about a deprecated call mediapipe makes; TensorFlow-style C++ logging is limited to errors.
mediapipe 0.10.14's own TFLite/absl start-up lines ("Created TensorFlow Lite XNNPACK delegate", "W0000 ...
Feedback manager") are printed below Python by its graph threads and honour none of these settings.
"""

from __future__ import annotations

import os
import warnings


def quiet_native_logs() -> None:
    """Set before mediapipe loads: absl/glog to errors only, TensorFlow's C++ logging off; drop the warning."""
    os.environ.setdefault("GLOG_minloglevel", "2")
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    warnings.filterwarnings("ignore", message=r"SymbolDatabase\.GetPrototype\(\) is deprecated")

