"""A stand-in for Hugging Face's ``spaces`` package (ZeroGPU), so the Space code path runs off a Space.

    SPACE_ID=me/demo python -m latentsync_demo.testing.zerogpu RECORD.jsonl app.py [app arguments]

``install(record)`` makes ``import spaces`` give a module whose ``GPU`` decorator behaves as ZeroGPU's does
for the code around it (``spaces.GPU(fn)`` and ``spaces.GPU(duration=seconds or callable)(fn)``; a callable
duration gets the handler's own arguments; generator handlers stay generators, names and signatures are kept)
and appends what happens, one JSON object a line, to ``record``:

  * ``{"event": "import", "torch_loaded": bool}``: whether torch was imported before ``spaces`` (ZeroGPU needs
    ``spaces`` first);
  * ``{"event": "decorate", "function": name, "duration": "callable" | seconds | null}``;
  * ``{"event": "call", "function": ..., "duration": seconds asked for, "args": [...]}``: each call, before the
    handler runs (file arguments by name, other arguments as given, when JSON can hold them);
  * ``{"event": "return", "function": ..., "updates": n, "error": null | exception name}``: after it ran
    (``updates``: what a generator handler streamed through the decorator).
"""

from __future__ import annotations

import functools
import importlib.abc
import importlib.machinery
import inspect
import json
import os
import runpy
import sys
import threading
from pathlib import Path


class _Recorder:
    def __init__(self, path: str | Path):
        self.path, self._lock = Path(path), threading.Lock()

    def __call__(self, **entry) -> None:
        with self._lock, self.path.open("a") as f:
            f.write(json.dumps(entry) + "\n")


def _plain(value):
    """A handler argument as JSON: files by name, other plain values as they are, anything else by type."""
    if isinstance(value, str) and os.path.isfile(value):
        return Path(value).name
    if value is None or isinstance(value, (str, int, float, bool)):
        return value
    return type(value).__name__


def _gpu(record: _Recorder):
    def GPU(fn=None, *, duration=None, **_):  # noqa: N802  (the real decorator's name)
        if fn is None:
            return lambda f: GPU(f, duration=duration)
        name = fn.__name__
        record(event="decorate", function=name,
               duration="callable" if callable(duration) else duration)

        def asked(args, kwargs) -> int:
            seconds = duration(*args, **kwargs) if callable(duration) else (duration or 60)
            record(event="call", function=name, duration=seconds, args=[_plain(a) for a in args])
            return seconds

        if inspect.isgeneratorfunction(fn):
            @functools.wraps(fn)
            def stream(*args, **kwargs):
                asked(args, kwargs)
                updates, error = 0, None
                try:
                    for update in fn(*args, **kwargs):
                        updates += 1
                        yield update
                except BaseException as exc:
                    error = type(exc).__name__
                    raise
                finally:
                    record(event="return", function=name, updates=updates, error=error)
            return stream

        @functools.wraps(fn)
        def call(*args, **kwargs):
            asked(args, kwargs)
            error = None
            try:
                return fn(*args, **kwargs)
            except BaseException as exc:
                error = type(exc).__name__
                raise
            finally:
                record(event="return", function=name, updates=1, error=error)
        return call

    return GPU


class _Finder(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """Answers ``import spaces`` with the stand-in (recording whether torch came first)."""

    def __init__(self, record: _Recorder):
        self.record = record

    def find_spec(self, name, path=None, target=None):
        return importlib.machinery.ModuleSpec(name, self) if name == "spaces" else None

    def create_module(self, spec):
        return None

    def exec_module(self, module):
        self.record(event="import", torch_loaded="torch" in sys.modules)
        module.GPU = _gpu(self.record)
        module.__doc__ = "stand-in for Hugging Face's spaces package (latentsync_demo.testing.zerogpu)"


def install(record: str | Path) -> None:
    """From now on ``import spaces`` gives the stand-in, recording to ``record``."""
    sys.modules.pop("spaces", None)
    sys.meta_path.insert(0, _Finder(_Recorder(record)))


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) < 2:
        raise SystemExit(__doc__.strip().splitlines()[2])
    install(argv[0])
    script = Path(argv[1]).resolve()
    sys.argv = [str(script), *argv[2:]]
    sys.path.insert(0, str(script.parent))
    runpy.run_path(str(script), run_name="__main__")


if __name__ == "__main__":
    main()
