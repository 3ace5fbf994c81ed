"""Load and trace the models in the background from the server's first run, so the first
heatmap does not wait for a cold start.

A new server process spends most of its first seconds importing TensorFlow, loading each
model and tracing its compiled passes. ``start()`` (called by app.py at the top of every run,
which costs nothing after the first) begins that work on a thread of its own, the model the
Inspect page opens with first; the pages then find the same objects in ``st.cache_resource``
(``ui.state.load``) and the same compiled passes in each model's Explainer. This module
imports nothing heavy, so the page can show itself before TensorFlow has loaded.
"""

from __future__ import annotations

import os
import threading
import time
from dataclasses import dataclass, field

import streamlit as st

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
        return "; ".join(f"{name}: {state}" for name, state in self.states.items())

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
                try:
                    warm(entry)
                    self.states[entry.name] = "ready"
                except Exception as err:  # noqa: BLE001 - a bad file is reported, the rest still warm
                    self.states[entry.name] = f"failed ({' '.join(str(err).split())[:200]})"
        finally:
            self.seconds = time.monotonic() - self.started


@st.cache_resource(show_spinner=False)
def _started() -> WarmUp:
    warm_up = WarmUp()
    if os.environ.get(ENV_SWITCH, "1") == "0":
        warm_up.seconds = 0.0
        return warm_up
    warm_up.thread = threading.Thread(target=warm_up.run, name="cvd-warmup", daemon=True)
    warm_up.thread.start()
    return warm_up


def start() -> WarmUp:
    """Return the process's warm-up, starting it on the first call."""
    return _started()
