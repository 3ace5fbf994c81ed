"""Every explanation method the engine offers, by name, with its kind, and one way to run any.

The registry is plain data (no TensorFlow import), so pages, the command line, the study and
the leaderboard can list methods cheaply::

    >>> from explain.methods import METHODS, ONE_PASS, names
    >>> METHODS["hirescam"].label, METHODS["hirescam"].kind
    ('HiResCAM', 'one-pass CAM')
    >>> names(ONE_PASS)
    ['gradcam', 'gradcam++', 'layercam', 'hirescam', 'xgradcam', 'eigencam']

Kinds:

- ``ONE_PASS`` ("one-pass CAM"): a function of one layer's activations and gradients
  (``explain.cams``), computed inside the engine's single compiled forward+backward pass for
  every asked layer at once (``Explainer.explain(..., methods=...)``); map at the layer's
  resolution (N, h, w).
- ``SLOW_CAM`` ("slow CAM"): a CAM whose channel weights need one forward pass per channel
  (Score-CAM, Ablation-CAM); map at the layer's resolution, one image at a time.
- ``PIXEL`` ("pixel attribution"): gradients with respect to the input pixels (saliency,
  SmoothGrad, Integrated Gradients, Guided Grad-CAM); map at the model input's resolution
  (N, H, W). Only Guided Grad-CAM uses a layer.

:func:`method_map` runs any of them and returns (N, h, w) maps, unscaled and non-negative,
ready for ``explain.cams.normalize`` and ``explain.overlay``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from explain.explainer import Explainer

ONE_PASS = "one-pass CAM"
SLOW_CAM = "slow CAM"
PIXEL = "pixel attribution"
KINDS = (ONE_PASS, SLOW_CAM, PIXEL)


@dataclass(frozen=True)
class Method:
    """One explanation method: its command-line name, its label, its kind, and its cost."""

    name: str  # the key used everywhere: --method NAME, Explainer.explain(methods=(NAME,))
    label: str  # what a page shows
    kind: str  # ONE_PASS, SLOW_CAM or PIXEL
    uses_layer: bool  # False for saliency, SmoothGrad, Integrated Gradients
    cost: str  # in words, for a page or a --help
    reference: str  # the paper

    @property
    def one_pass(self) -> bool:
        return self.kind == ONE_PASS


METHODS: dict[str, Method] = {
    m.name: m
    for m in (
        Method("gradcam", "Grad-CAM", ONE_PASS, True, "in the one pass", "Selvaraju et al. 2017"),
        Method("gradcam++", "Grad-CAM++", ONE_PASS, True, "in the one pass", "Chattopadhay et al. 2018"),
        Method("layercam", "Layer-CAM", ONE_PASS, True, "in the one pass", "Jiang et al. 2021"),
        Method("hirescam", "HiResCAM", ONE_PASS, True, "in the one pass", "Draelos & Carin 2020"),
        Method("xgradcam", "XGrad-CAM", ONE_PASS, True, "in the one pass", "Fu et al. 2020"),
        Method(
            "eigencam", "Eigen-CAM", ONE_PASS, True, "in the one pass (no gradient)", "Muhammad & Yeasin 2020"
        ),
        Method(
            "scorecam", "Score-CAM", SLOW_CAM, True, "one forward pass per channel (64)", "Wang et al. 2020"
        ),
        Method(
            "ablationcam",
            "Ablation-CAM",
            SLOW_CAM,
            True,
            "one forward pass per channel (64)",
            "Desai & Ramaswamy 2020",
        ),
        Method(
            "saliency", "Gradient saliency", PIXEL, False, "one forward+backward pass", "Simonyan et al. 2014"
        ),
        Method(
            "smoothgrad",
            "SmoothGrad",
            PIXEL,
            False,
            "16 noisy forward+backward passes",
            "Smilkov et al. 2017",
        ),
        Method(
            "ig",
            "Integrated Gradients",
            PIXEL,
            False,
            "32 forward+backward passes",
            "Sundararajan et al. 2017",
        ),
        Method(
            "guided-gradcam",
            "Guided Grad-CAM",
            PIXEL,
            True,
            "two forward+backward passes",
            "Selvaraju et al. 2017 (guided backprop: Springenberg et al. 2015)",
        ),
    )
}


def names(kind: str | None = None) -> list[str]:
    """Return the method names of one kind (all when ``kind`` is None), in registry order."""
    if kind is not None and kind not in KINDS:
        raise ValueError(f"unknown kind {kind!r}; choose from {KINDS}")
    return [name for name, m in METHODS.items() if kind is None or m.kind == kind]


def labels(kind: str | None = None) -> dict[str, str]:
    """Return {name: label} for the methods of one kind (all when ``kind`` is None)."""
    return {name: METHODS[name].label for name in names(kind)}


def check(name: str) -> Method:
    """Return the method called ``name``; raise KeyError with the choices when there is none."""
    if name not in METHODS:
        raise KeyError(f"unknown method {name!r}; choose from {', '.join(METHODS)}")
    return METHODS[name]


def method_map(
    explainer: Explainer,
    name: str,
    batch: np.ndarray,
    layer: str | None = None,
    classes: Sequence[int] | int | None = None,
) -> np.ndarray:
    """Return (N, h, w) maps of method ``name`` for a model batch, unscaled and non-negative.

    CAMs come at the layer's resolution, pixel attributions at the input's. ``layer`` is a
    layer path (``None``: the explainer's last block); pixel attributions other than Guided
    Grad-CAM ignore it. ``classes`` as in ``Explainer.explain`` (``None``: predicted).
    Default settings: 64 channels for Score-CAM and Ablation-CAM, 16 samples at 15 % noise for
    SmoothGrad, 32 steps from a black photo for Integrated Gradients.
    """
    method = check(name)
    batch = np.asarray(batch, dtype=np.float32)
    if layer is None:
        layer = explainer.layers.last.path
    if method.kind == ONE_PASS:
        return explainer.explain(batch, [layer], classes, (name,)).cams[name][layer]
    if method.kind == SLOW_CAM:
        from explain.ablation_cam import ablation_cam
        from explain.score_cam import score_cam

        result = explainer.explain(batch, [layer], classes, ("gradcam",), keep=layer)
        maps = []
        for image, acts, target in zip(batch, result.kept_activations, result.targets):
            if name == "scorecam":
                maps.append(score_cam(explainer, image, acts, int(target)))
            else:
                maps.append(ablation_cam(explainer, image, layer, acts, int(target)))
        return np.stack(maps)
    from explain import attributions

    if name == "saliency":
        return attributions.saliency(explainer, batch, classes)
    if name == "smoothgrad":
        return attributions.smoothgrad(explainer, batch, classes)
    if name == "ig":
        return attributions.integrated_gradients(explainer, batch, classes).map
    return attributions.guided_grad_cam(explainer, batch, layer, classes)
