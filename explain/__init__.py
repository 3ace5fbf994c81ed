"""The explanation engine: from decoded photos to predictions, class activation maps,
feature maps and overlays, for any Keras image classifier. No UI inside.

>>> from explain import Explainer, decode_image, normalize, overlay
>>> explainer = Explainer(model, class_names=["cat", "dog"])
>>> rgb = decode_image(open("cat.jpg", "rb").read())
>>> result = explainer.explain(explainer.prepare([rgb]), layers="blocks")
>>> picture = overlay(rgb, normalize(result.cam(explainer.layers.last.path)).values)
"""

from explain.cams import METHODS, grad_cam, grad_cam_plus_plus, layer_cam, normalize
from explain.explainer import Explainer, Explanation
from explain.images import ImageError, decode_image
from explain.layers import LayerCatalog, LayerInfo
from explain.overlay import overlay

__all__ = [
    "METHODS",
    "Explainer",
    "Explanation",
    "ImageError",
    "LayerCatalog",
    "LayerInfo",
    "decode_image",
    "grad_cam",
    "grad_cam_plus_plus",
    "layer_cam",
    "normalize",
    "overlay",
]
