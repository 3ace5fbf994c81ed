"""The engine's one pass: for a batch, a set of layers and a target class per image, ONE
forward and ONE backward pass give the prediction and every layer's class activation maps.

The compiled pass is built once per (model, layer set, methods) and cached; input shapes
are fixed to the model's input size with a free batch dimension, so new photos, other
classes and another kept layer never retrace.
"""

from __future__ import annotations

import atexit
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import keras
import numpy as np
import tensorflow as tf

from explain.cams import CAM_FUNCTIONS, layer_cams
from explain.graph import walk
from explain.heads import Head, find_head
from explain.images import to_model_input
from explain.layers import LayerCatalog, catalog

DEFAULT_SIZE = 224

#: Set at exit: background compiles not yet started are skipped, running ones joined (a
#: TensorFlow trace cut off by the interpreter's exit aborts the process).
_STOPPING = threading.Event()
_BACKGROUND: list[threading.Thread] = []


@atexit.register
def _finish_background_compiles() -> None:
    _STOPPING.set()
    for thread in _BACKGROUND:
        thread.join(timeout=120)


@dataclass
class Explanation:
    """What one pass gives for N images."""

    probabilities: np.ndarray  # (N, n_classes)
    logits: np.ndarray  # (N, units)
    targets: np.ndarray  # (N,) the class each map explains
    class_names: list[str]
    cams: dict[str, dict[str, np.ndarray]]  # method -> layer path -> (N, h, w), unscaled
    kept_layer: str | None = None
    kept_activations: np.ndarray | None = None  # (N, h, w, c) of ``kept_layer``
    kept_gradients: np.ndarray | None = None
    layers: list[str] = field(default_factory=list)

    @property
    def predicted(self) -> np.ndarray:
        return self.probabilities.argmax(axis=1)

    def cam(self, layer: str, image: int = 0, method: str = "gradcam") -> np.ndarray:
        return self.cams[method][layer][image]


class Explainer:
    """A model ready to be explained: its head, its layers, its cached compiled passes."""

    #: The card's input recipe (:class:`explain.preprocess.Feeding`); None: ``x * scale + offset``.
    feeding = None
    #: True: until :meth:`compile` has compiled a pass, :meth:`explain` runs that pass's code
    #: eagerly (op by op) instead of tracing it. Same maps; for ResNet-50 about 1 s against
    #: 4.7 s for trace and first call, 0.2 s a call once compiled. The app sets it, and its
    #: warm-up compiles the passes in the background (ui.warmup).
    eager_until_compiled = False
    #: With ``eager_until_compiled``: seconds after a pass first runs eagerly before it is
    #: compiled on a background thread (so a page's later photos, methods and classes run
    #: compiled); None: never, the caller compiles.
    compile_after: float | None = None
    #: Called on that thread after ``compile_after`` seconds; returns when compiling may start.
    #: Tracing holds Python's interpreter lock for seconds, so an app waits until it is idle
    #: (``ui.warmup.WarmUp.wait_until_quiet``); None: at once.
    wait_to_compile: Callable[[], object] | None = None

    def __init__(
        self,
        model: keras.Model,
        class_names: Sequence[str] | None = None,
        input_size: tuple[int, int] | None = None,
        scale: float = 1.0,
        offset: float = 0.0,
    ):
        self.model = model
        self.head: Head = find_head(model)
        shape = tuple(model.input_shape[1:]) if not isinstance(model.input_shape, list) else None
        if shape is None or len(shape) != 3:
            raise ValueError(
                f"the model takes input of shape {model.input_shape}; an image classifier takes "
                "(height, width, channels)"
            )
        height, width, channels = shape
        if input_size is not None:
            height, width = input_size
        self.input_shape = (int(height or DEFAULT_SIZE), int(width or DEFAULT_SIZE), int(channels or 3))
        names = list(class_names or [])
        if len(names) != self.head.n_classes:
            names = [f"class {i}" for i in range(self.head.n_classes)]
        self.class_names = names
        self.scale, self.offset = scale, offset
        self.layers: LayerCatalog = catalog(model, self.input_shape)
        self._passes: dict[tuple, tf.types.experimental.GenericFunction] = {}
        self._predict = None
        self._scores = None
        self._lock = threading.Lock()
        self._compiling: dict[tuple, threading.Thread] = {}
        self.traces = 0

    @classmethod
    def from_card(cls, model: keras.Model, card) -> Explainer:
        prep = card.preprocessing
        scale = 1.0 if prep.rescale_inside_model else prep.scale
        offset = 0.0 if prep.rescale_inside_model else prep.offset
        explainer = cls(model, card.class_names, tuple(prep.input_size), scale, offset)
        # The card's whole recipe (scaling, channel order, crop, grey): explain/preprocess.py.
        if hasattr(prep, "feeding"):
            explainer.feeding = prep.feeding(explainer.input_shape[2])
        return explainer

    # -- input ---------------------------------------------------------------------------
    def prepare(self, images: Sequence[np.ndarray]) -> np.ndarray:
        """Return decoded RGB photos as one (N, H, W, C) float32 model batch."""
        h, w, c = self.input_shape
        return np.stack(
            [to_model_input(rgb, (h, w), c, self.scale, self.offset, self.feeding) for rgb in images]
        )

    # -- compiled functions --------------------------------------------------------------
    def _signature(self) -> list[tf.TensorSpec]:
        return [tf.TensorSpec((None, *self.input_shape), tf.float32)]

    def _logits(self, x: tf.Tensor, record=None) -> tf.Tensor:
        linear = self.head.path if self.head.strip_activation else None
        return tf.cast(walk(self.model, x, record, linear_head=linear), tf.float32)

    def logits(self, x: tf.Tensor, on_output=None) -> tf.Tensor:
        """Return (N, units) logits of a model batch; for use inside a ``tf.function``.

        ``on_output(path, layer, out)`` sees every layer's output and may return a tensor
        that replaces it downstream (see ``explain.graph.walk``).
        """
        return self._logits(x, on_output)

    def targets(self, logits: tf.Tensor, classes: tf.Tensor) -> tf.Tensor:
        """Return (N,) the class explained per image: ``classes``, or the predicted one where < 0."""
        predicted = tf.argmax(self.head.probabilities(logits), axis=1, output_type=tf.int32)
        return tf.where(classes < 0, predicted, classes)

    def signature(self, *extra: tf.TensorSpec) -> list[tf.TensorSpec]:
        """Return the input signature of a compiled function: a model batch, then ``extra``."""
        return [*self._signature(), *extra]

    def compiled(self, key: tuple, build):
        """Return the compiled function cached under ``key``, building it once with ``build()``.

        Other engine modules (pixel attributions, Ablation-CAM) keep their passes here, so
        they live as long as the explainer and are traced once.
        """
        with self._lock:
            fn = self._passes.get(key)
            if fn is None:
                fn = build()
                self._passes[key] = fn
        return fn

    def resolve_classes(self, batch: np.ndarray, classes: Sequence[int] | int | None) -> np.ndarray:
        """Return (N,) int32 classes for ``batch``: the given ones, the predicted where None or < 0."""
        n = len(batch)
        target = np.broadcast_to(np.asarray(-1 if classes is None else classes, dtype=np.int32), (n,)).copy()
        if np.any(target >= self.head.n_classes):
            raise ValueError(f"class index out of range for a {self.head.n_classes}-class model")
        if np.any(target < 0):
            predicted = self.predict(batch).argmax(axis=1).astype(np.int32)
            target = np.where(target < 0, predicted, target)
        return target

    def predict(self, batch: np.ndarray) -> np.ndarray:
        """Return (N, n_classes) probabilities."""
        with self._lock:
            if self._predict is None:

                def predict(x):
                    self.traces += 1
                    return self.head.probabilities(self._logits(x))

                self._predict = tf.function(predict, input_signature=self._signature(), autograph=False)
        return self._predict(tf.convert_to_tensor(batch, tf.float32)).numpy()

    def class_scores(self, batch: np.ndarray, classes: Sequence[int] | int) -> np.ndarray:
        """Return the (N,) score explained for each image's class (see ``Head.class_score``)."""
        with self._lock:
            if self._scores is None:

                def scores(x, c):
                    self.traces += 1
                    return self.head.class_score(self._logits(x), c)

                signature = [*self._signature(), tf.TensorSpec((None,), tf.int32)]
                self._scores = tf.function(scores, input_signature=signature, autograph=False)
        batch = np.asarray(batch, dtype=np.float32)
        target = np.broadcast_to(np.asarray(classes, dtype=np.int32), (len(batch),)).copy()
        return self._scores(tf.convert_to_tensor(batch), tf.convert_to_tensor(target)).numpy()

    def _pass_for(self, layers: tuple[str, ...], methods: tuple[str, ...]):
        key = (layers, methods)
        with self._lock:
            fn = self._passes.get(key)
            if fn is None:
                fn = self._build_pass(layers, methods)
                self._passes[key] = fn
        return fn

    def _build_pass(self, layers: tuple[str, ...], methods: tuple[str, ...]):
        wanted = set(layers)

        def one_pass(x, classes, keep):
            if tf.inside_function():  # a trace, not an eager run
                self.traces += 1
            taps: dict[str, tf.Tensor] = {}

            def record(path, _layer, out):
                if path in wanted:
                    tape.watch(out)
                    taps[path] = out

            # Only the taps are watched: no weight read is taped, nor any layer before the first
            # tap (0.2 s less of ResNet-50's first eager pass on a cold start; the same maps).
            with tf.GradientTape(watch_accessed_variables=False) as tape:
                logits = self._logits(x, record)
                probabilities = self.head.probabilities(logits)
                predicted = tf.argmax(probabilities, axis=1, output_type=tf.int32)
                targets = tf.where(classes < 0, predicted, classes)
                score = tf.reduce_sum(self.head.class_score(logits, targets))
            activations = [taps[p] for p in layers]
            gradients = tape.gradient(score, activations)
            activations = [tf.cast(a, tf.float32) for a in activations]
            gradients = [
                tf.zeros_like(a) if g is None else tf.cast(g, tf.float32)
                for a, g in zip(activations, gradients)
            ]
            per_layer = [layer_cams(a, g, methods) for a, g in zip(activations, gradients)]
            cams = {m: [maps[m] for maps in per_layer] for m in methods}
            none = lambda: tf.zeros((0, 1, 1, 1), tf.float32)  # noqa: E731
            kept_a = tf.switch_case(keep, [lambda a=a: a for a in activations], default=none)
            kept_g = tf.switch_case(keep, [lambda g=g: g for g in gradients], default=none)
            return probabilities, logits, targets, cams, kept_a, kept_g

        signature = [
            *self._signature(),
            tf.TensorSpec((None,), tf.int32),
            tf.TensorSpec((), tf.int32),
        ]
        return tf.function(one_pass, input_signature=signature, autograph=False)

    def compile(self, layers: Sequence[str] | str = "blocks", methods: Sequence[str] = ("gradcam",)) -> None:
        """Trace the pass for ``layers`` and ``methods`` and make its first call, on a blank batch.

        Afterwards :meth:`explain` with the same layers and methods (any photos, classes and
        kept layer) runs compiled.
        """
        paths = self._tap_set(layers, None)
        fn = self._pass_for(paths, tuple(methods))
        blank = np.zeros((1, *self.input_shape), np.float32)
        fn(tf.convert_to_tensor(blank), tf.constant([-1], tf.int32), tf.constant(-1, tf.int32))

    def _compile_later(self, paths: tuple[str, ...], methods: tuple[str, ...]) -> threading.Thread | None:
        """Start compiling a pass after ``compile_after`` seconds on a thread (once per pass)."""
        if self.compile_after is None:
            return None
        with self._lock:
            thread = self._compiling.get((paths, methods))
            if thread is None:

                def compile_soon():
                    if _STOPPING.wait(self.compile_after):
                        return  # the interpreter is exiting
                    if self.wait_to_compile is not None:
                        self.wait_to_compile()
                    if _STOPPING.is_set():
                        return
                    try:
                        self.compile(list(paths), methods)
                    except Exception:  # noqa: BLE001, S110 - the eager path still works; it just stays eager
                        pass

                thread = threading.Thread(target=compile_soon, name="cvd-compile", daemon=True)
                self._compiling[paths, methods] = thread
                _BACKGROUND.append(thread)
                thread.start()
        return thread

    def is_compiled(self, layers: Sequence[str] | str, methods: Sequence[str] = ("gradcam",)) -> bool:
        """Return whether the pass for ``layers`` and ``methods`` has been traced."""
        fn = self._passes.get((self._tap_set(layers, None), tuple(methods)))
        return fn is not None and fn.experimental_get_tracing_count() > 0

    def _tap_set(self, layers: Sequence[str] | str, keep: str | None) -> tuple[str, ...]:
        """Return the layer paths of a pass in network order (``keep`` added when missing)."""
        paths = self.layers.resolve(layers)
        if keep is not None and keep not in paths:
            paths.append(keep)
        order = {p: i for i, p in enumerate(self.layers.paths)}
        return tuple(sorted(paths, key=order.__getitem__))

    def explain(
        self,
        batch: np.ndarray,
        layers: Sequence[str] | str = "last",
        classes: Sequence[int] | int | None = None,
        methods: Sequence[str] = ("gradcam",),
        keep: str | None = None,
    ) -> Explanation:
        """Return predictions and maps for every image in ``batch`` at every layer in ``layers``.

        ``classes`` gives the class each image's maps explain (``None`` or -1: the predicted
        class). ``keep`` names one of ``layers`` whose raw activations and gradients are
        returned too (for feature maps). Layer order follows the network.
        """
        paths = self._tap_set(layers, keep)
        unknown = [m for m in methods if m not in CAM_FUNCTIONS]
        if unknown:
            raise KeyError(
                f"{unknown[0]!r} is not a one-pass CAM; choose from {', '.join(CAM_FUNCTIONS)} "
                "(others: explain.methods.method_map)"
            )
        batch = np.asarray(batch, dtype=np.float32)
        n = len(batch)
        if classes is None:
            classes = -1
        target = np.broadcast_to(np.asarray(classes, dtype=np.int32), (n,)).copy()
        if np.any(target >= self.head.n_classes):
            raise ValueError(f"class index out of range for a {self.head.n_classes}-class model")
        keep_index = paths.index(keep) if keep is not None else -1
        fn = self._pass_for(paths, tuple(methods))
        if self.eager_until_compiled and fn.experimental_get_tracing_count() == 0:
            self._compile_later(paths, tuple(methods))
            fn = fn.python_function  # the same code, op by op: no trace to wait for
        probs, logits, targets, cams, kept_a, kept_g = fn(
            tf.convert_to_tensor(batch), tf.convert_to_tensor(target), tf.constant(keep_index, tf.int32)
        )
        return Explanation(
            probabilities=probs.numpy(),
            logits=logits.numpy(),
            targets=targets.numpy(),
            class_names=self.class_names,
            cams={m: {p: c.numpy() for p, c in zip(paths, cams[m])} for m in methods},
            kept_layer=keep,
            kept_activations=kept_a.numpy() if keep is not None else None,
            kept_gradients=kept_g.numpy() if keep is not None else None,
            layers=list(paths),
        )
