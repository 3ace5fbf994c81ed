"""Load and compile the models in the background from the moment the server starts, so the
first heatmap does not wait for a cold start.

A new server process spends most of its first seconds importing TensorFlow, loading each
model and tracing its compiled passes. ``start()`` (called by app.py when the server starts,
and at the top of every run, which costs nothing after the first) begins that work on a
thread of its own: TensorFlow (the pages wait for this import), the model Inspect opens with,
then, once a page has been shown (a page that needs the pass before then runs it eagerly, see
``Explainer.eager_until_compiled``), that model's compiled pass, the other models and their
passes, and last the prediction passes. Each of those steps waits until no page has run for
a few seconds, or one has run for long (:meth:`WarmUp.wait_until_quiet`, which app.py feeds
by counting the runs): a trace would hold the interpreter lock while the server sends the
page's pictures. The pages find the same objects in ``st.cache_resource``
(``ui.state.load``) and the same compiled passes in each model's Explainer. This module
imports nothing heavy, so a page can show itself before TensorFlow has loaded.
"""

from __future__ import annotations

import atexit
import functools
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
    #: Set once TensorFlow is imported (or failed to): see :meth:`wait_for_tensorflow`.
    imported: threading.Event = field(default_factory=threading.Event)
    #: Set when a page has finished its first run (app.py): the other models wait for it.
    page_shown: threading.Event = field(default_factory=threading.Event)
    #: Seconds the warm-up waits for that first page before compiling anyway.
    page_wait: float = 20.0
    #: Seconds with no page running before a compile starts (:meth:`wait_until_quiet`): the
    #: browser is still fetching the pictures of the run that just ended.
    quiet: float = 3.0
    #: Seconds a page may run before compiles start anyway: a page that explains many photos
    #: in one run (Errors, Study) is better off compiled midway than eager to its end.
    long_run: float = 6.0
    #: Seconds :meth:`wait_until_quiet` waits at most (pages running back to back).
    quiet_wait: float = 60.0
    _running: int = 0
    _last_run: float = field(default_factory=time.monotonic)
    _run_began: float = 0.0
    _activity: threading.Condition = field(default_factory=threading.Condition)
    #: Set when a page asks for a model (ui.state.load): the warm-up's first load goes ahead.
    model_asked: threading.Event = field(default_factory=threading.Event)
    #: Seconds after the TensorFlow import that the first load waits for a page that is not
    #: running yet (no browser connected): then it loads anyway.
    no_page_wait: float = 1.0
    #: Set as the interpreter exits: the warm-up stops after the step it is in (see _stop).
    stopping: threading.Event = field(default_factory=threading.Event)
    #: What was done when, in seconds from the start: (step, seconds), also logged at INFO.
    timeline: list[tuple[str, float]] = field(default_factory=list)

    @property
    def done(self) -> bool:
        return self.seconds is not None

    def summary(self) -> str:
        """Return one line saying what is ready, what is still warming up, and what failed."""
        if not self.states:
            return "starting TensorFlow…"
        return "; ".join(f"{name}: {state}" for name, state in list(self.states.items()))

    def mark(self, step: str) -> None:
        """Record (and log) that ``step`` is done now, for the timeline of a cold start."""
        seconds = time.monotonic() - self.started
        self.timeline.append((step, seconds))
        _logger().info("warm-up: %s at %.2f s", step, seconds)

    def page_started(self) -> None:
        """A page's script began to run (app.py, around every run)."""
        with self._activity:
            if self._running == 0:
                self._run_began = time.monotonic()
            self._running += 1

    def page_finished(self) -> None:
        """A page's script has finished its run."""
        with self._activity:
            self._running -= 1
            self._last_run = time.monotonic()
            self._activity.notify_all()
        if not self.page_shown.is_set():
            self.mark("first page run ended")
            self.page_shown.set()

    def wait_until_quiet(self) -> bool:
        """Return once no page has run for :attr:`quiet` seconds, or once pages have been
        running for :attr:`long_run` seconds on end (at most :attr:`quiet_wait`).

        Tracing a pass holds Python's interpreter lock for seconds at a time; started while a
        page runs, or while the server sends the browser a page's pictures, it delayed the
        first heatmap by up to 5 s (bench/first_heatmap.py). Returns early, and False, when
        the interpreter is exiting (the warm-up then stops).
        """
        give_up = time.monotonic() + self.quiet_wait
        with self._activity:
            while threading.main_thread().is_alive():
                now = time.monotonic()
                if self._running:
                    ready_in = self._run_began + self.long_run - now
                else:
                    ready_in = self._last_run + self.quiet - now
                if ready_in <= 0 or now >= give_up:
                    return not self.stopping.is_set()
                self._activity.wait(min(ready_in, give_up - now, 0.2))
        return False

    def wait_for_first_load(self) -> None:
        """Return when the first model should load: once a page asks for a model, a page
        run has ended, or (no page running) :attr:`no_page_wait` seconds have passed.

        Inspect's first run first draws a heatmap from the model file read as plain
        TensorFlow ops (ui.first_look, about 1 s), and only then asks for the Keras model.
        Building that model here at the same time held the interpreter lock the first look
        needed; a page that wants the model at once (Layer depth) asks for it at once.
        """
        give_up = time.monotonic() + self.no_page_wait
        with self._activity:
            while not (self.model_asked.is_set() or self.page_shown.is_set() or self.stopping.is_set()):
                if not self._running and time.monotonic() >= give_up:
                    return
                self._activity.wait(0.05)

    def ask_for_model(self) -> None:
        """A page is about to load a model (ui.state.load): the first load need not wait."""
        self.model_asked.set()

    def wait_for_tensorflow(self, timeout: float = 300) -> None:
        """Block until the warm-up has imported TensorFlow (at once when it is off or done).

        Two threads importing TensorFlow at the same time can meet one of its modules half
        initialised ("partially initialized module ... (most likely due to a circular
        import)"): a page imports it only after the warm-up has.
        """
        if self.thread is not None:
            self.imported.wait(timeout)

    def run(self) -> None:
        """Load and trace every model the registry finds, the Inspect page's first; then the
        prediction passes, which no first page waits for."""
        try:
            try:
                compile_quickly()
                self.mark("TensorFlow imported")
            finally:
                self.imported.set()
            from ui.state import DEFAULT_MODEL, registry, warm, warm_prediction

            entries = registry()
            entries.sort(key=lambda e: e.name != DEFAULT_MODEL)  # stable: the rest keep their order
            for entry in entries:
                self.states[entry.name] = "waiting"
            ready = []
            for number, entry in enumerate(entries):
                if number > 0 and not self.wait_until_quiet():  # the pages come first
                    return
                self.states[entry.name] = "loading" if number == 0 else "loading and tracing"
                began = time.monotonic()
                try:
                    if number == 0:
                        # The first model loaded, a page that opens now explains its photo
                        # eagerly (about 1 s); compiling at the same time would slow it down
                        # (one interpreter lock), so wait until a page has been shown.
                        self.wait_for_first_load()
                        warm(entry, compile_pass=False)
                        self.mark(f"{entry.name} loaded")
                        self.states[entry.name] = "loaded; tracing after the first page"
                        self.page_shown.wait(self.page_wait)
                        if not self.wait_until_quiet():
                            return
                        self.states[entry.name] = "tracing"
                    warm(entry)
                    self.mark(f"{entry.name} traced")
                    self.states[entry.name] = f"ready in {time.monotonic() - began:.1f} s"
                    ready.append(entry)
                except Exception as err:  # noqa: BLE001 - a bad file is reported, the rest still warm
                    self.states[entry.name] = f"failed ({' '.join(str(err).split())[:200]})"
            for entry in ready:
                if not self.wait_until_quiet():
                    return
                try:
                    warm_prediction(entry)
                except Exception:  # noqa: BLE001, S112 - the page that needs it will say why
                    continue
        finally:
            self.seconds = time.monotonic() - self.started
            self.mark("done")


#: What TensorFlow and Keras import only when installed, for features the app does not use:
#: TensorFlow Lite's converter imports JAX (this project installs it for training on a GPU),
#: and Keras's data adapters import pandas to accept DataFrames in fit() and predict(), which
#: the app never passes them (it imports pandas later, where a page needs it).
_NOT_FOR_TENSORFLOW = ("jax", "jaxlib", "pandas")


def import_tensorflow_quickly() -> None:
    """Import TensorFlow without the packages above (1.1-1.6 s of a cold start, measured in
    the README's "Start-up"); each is hidden only while TensorFlow imports, so a later
    ``import jax`` or ``import pandas`` in this process still works.
    """
    import sys

    if "tensorflow" in sys.modules:
        return
    hidden = [name for name in _NOT_FOR_TENSORFLOW if name not in sys.modules]
    for name in hidden:
        sys.modules[name] = None  # makes ``import jax`` raise ImportError, which they expect
    try:
        import tensorflow  # noqa: F401
    finally:
        for name in hidden:
            if sys.modules.get(name, 0) is None:
                del sys.modules[name]


def compile_quickly() -> None:
    """Import TensorFlow (see above) and switch off Grappler's graph rewriting for this process.

    Grappler rewrites every compiled function on its first call, which roughly doubles the
    first call of the pass to every block; later calls were no faster with it on this CPU
    (``python bench/first_call.py`` compares both, with the figures in the README). Called
    before anything is compiled, on the warm-up's thread.
    """
    import_tensorflow_quickly()
    import tensorflow as tf

    tf.config.optimizer.set_experimental_options({"disable_meta_optimizer": True})


_lock = threading.Lock()
_current: WarmUp | None = None


@functools.cache
def _logger():
    """Streamlit's logger for this module (imported on first use: this module stays light)."""
    from streamlit.logger import get_logger

    return get_logger(__name__)


def ask_for_model() -> None:
    """Tell the process's warm-up (if app.py started one) that a page wants a model now."""
    current = _current
    if current is not None:
        current.ask_for_model()


def wait_until_quiet() -> None:
    """The process's warm-up's :meth:`WarmUp.wait_until_quiet`; returns at once where app.py
    has not started one (a page run on its own, as in tests). Starts nothing."""
    current = _current
    if current is not None:
        current.wait_until_quiet()


@atexit.register
def _stop() -> None:
    """As the interpreter exits, let the warm-up finish the step it is in and stop.

    A thread still inside TensorFlow's C++ code when the interpreter finalises is unwound by
    force, which TensorFlow's code turns into an abort ("FATAL: exception not rethrown"):
    stopping a server during its warm-up exited with status 134.
    """
    current = _current
    if current is None or current.thread is None:
        return
    current.stopping.set()
    current.page_shown.set()
    current.thread.join(timeout=120)


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
