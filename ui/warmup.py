"""Load and trace the models in the background from the moment the server starts, so the
first heatmap does not wait for a cold start.

A new server process spends most of its first seconds importing TensorFlow, loading each
model and tracing its compiled passes. ``start()`` (called by app.py when the server starts,
and at the top of every run, which costs nothing after the first) begins that work on a
thread of its own, the model the Inspect page opens with first; the pages then find the
same objects in ``st.cache_resource`` (``ui.state.load``) and the same compiled passes in
each model's Explainer. This module imports nothing heavy, so a page can show itself
before TensorFlow has loaded.
"""

from __future__ import annotations

import os
import threading
import time
from dataclasses import dataclass, field

#: Set to 0 to start nothing in the background (tests that run app.py in-process set it).
ENV_SWITCH = "CVD_WARMUP"


@dataclass
class WarmUp:
    """What the background warm-up has done so far: model name -> state, and when it finished."""

    states: dict[str, str] = field(default_factory=dict)
    started: float = field(default_factory=time.monotonic)
    seconds: float | None = None  # from start to the end, once finished
    thread: threading.Thread | None = None

    @property
    def done(self) -> bool:
        return self.seconds is not None

    def summary(self) -> str:
        """Return one line saying what is ready, what is still warming up, and what failed."""
        if not self.states:
            return "starting TensorFlow…"
        return "; ".join(f"{name}: {state}" for name, state in list(self.states.items()))

    def run(self) -> None:
        """Load and trace every model the registry finds, the Inspect page's first."""
        try:
            from ui.state import DEFAULT_MODEL, registry, warm

            entries = registry()
            entries.sort(key=lambda e: e.name != DEFAULT_MODEL)  # stable: the rest keep their order
            for entry in entries:
                self.states[entry.name] = "waiting"
            for entry in entries:
                self.states[entry.name] = "loading and tracing"
                began = time.monotonic()
                try:
                    warm(entry)
                    self.states[entry.name] = f"ready in {time.monotonic() - began:.1f} s"
                except Exception as err:  # noqa: BLE001 - a bad file is reported, the rest still warm
                    self.states[entry.name] = f"failed ({' '.join(str(err).split())[:200]})"
        finally:
            self.seconds = time.monotonic() - self.started


_lock = threading.Lock()
_current: WarmUp | None = None


def start() -> WarmUp:
    """Return the process's warm-up, starting it on the first call (``CVD_WARMUP=0``: none).

    A module global rather than ``st.cache_resource``: the server calls this at start-up
    (app.py's lifespan hook), before Streamlit's runtime exists, and every run after that
    must find the same one.
    """
    global _current
    with _lock:
        if _current is None:
            _current = WarmUp()
            if os.environ.get(ENV_SWITCH, "1") == "0":
                _current.seconds = 0.0
            else:
                _current.thread = threading.Thread(target=_current.run, name="cvd-warmup", daemon=True)
                _current.thread.start()
        return _current
