"""The explanation engine: from decoded photos to predictions, class activation maps,
feature maps and overlays, for any Keras image classifier. No UI inside.

>>> from explain import Explainer, decode_image, normalize, overlay
>>> explainer = Explainer(model, class_names=["cat", "dog"])
>>> rgb = decode_image(open("cat.jpg", "rb").read())
>>> result = explainer.explain(explainer.prepare([rgb]), layers="blocks")
>>> picture = overlay(rgb, normalize(result.cam(explainer.layers.last.path)).values)

Every method by name (``METHODS``, ``names(kind)``): one-pass CAMs come from ``explain`` with
``methods=(...)``; any method, slow CAMs and pixel attributions too, from ``method_map``.

Names load on first use, so ``explain.images`` works without TensorFlow (the JAX route).
"""

from importlib import import_module

_EXPORTS = {
    "METHODS": "explain.methods",
    "Method": "explain.methods",
    "method_map": "explain.methods",
    "names": "explain.methods",
    "CAM_FUNCTIONS": "explain.cams",
    "grad_cam": "explain.cams",
    "grad_cam_plus_plus": "explain.cams",
    "layer_cam": "explain.cams",
    "hires_cam": "explain.cams",
    "xgrad_cam": "explain.cams",
    "eigen_cam": "explain.cams",
    "normalize": "explain.cams",
    "Explainer": "explain.explainer",
    "Explanation": "explain.explainer",
    "ImageError": "explain.images",
    "decode_image": "explain.images",
    "LayerCatalog": "explain.layers",
    "LayerInfo": "explain.layers",
    "overlay": "explain.overlay",
}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name in _EXPORTS:
        return getattr(import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'explain' has no attribute {name!r}")
