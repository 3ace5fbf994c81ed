"""Where a map looks, measured against a pixel mask of the object: pointing game, energy share,
spread, and the chance level each is compared with.

Maps are 2-D arrays on any grid (a block's h x w); masks are boolean arrays at the photo's
resolution. A map is brought to the mask's size the way it is drawn over the photo
(:func:`explain.overlay.upsample`, bilinear), so a score says what a user sees on the overlay.

- Pointing game (Zhang et al. 2016): is the map's peak on the object?
- Energy-based pointing game (Wang et al. 2020, Score-CAM): the share of the map's
  non-negative mass that falls on the object.
- Chance level: the object's share of the photo, what a map spread evenly (or a peak thrown
  at random) scores on both.
"""

from __future__ import annotations

import numpy as np

from explain.overlay import upsample

#: Oxford-IIIT Pet trimaps: 1 the animal, 2 background, 3 the border ("not classified").
TRIMAP_BACKGROUND = 2


def animal_mask(trimap: np.ndarray) -> np.ndarray:
    """Return a boolean mask, True on the animal: trimap values 1 (animal) and 3 (its border)."""
    trimap = np.asarray(trimap)
    if trimap.ndim == 3:
        trimap = trimap[..., 0]
    return trimap != TRIMAP_BACKGROUND


def scaled(cam: np.ndarray) -> np.ndarray | None:
    """Return the map's non-negative part divided by its maximum, or None for a map with no
    positive, finite value (nothing to point with)."""
    cam = np.asarray(cam, dtype=np.float32)
    if cam.size == 0 or not np.all(np.isfinite(cam)):
        return None
    cam = np.maximum(cam, 0.0)
    peak = float(cam.max())
    if peak <= 1e-12:
        return None
    return cam / peak


def at_size(cam: np.ndarray, size: tuple[int, int]) -> np.ndarray | None:
    """Return the map scaled to [0, 1] and resized bilinearly to (height, width), or None
    when the map is all zero or not finite."""
    values = scaled(cam)
    if values is None:
        return None
    if values.shape == tuple(size):
        return values
    return upsample(values, size)


def peak_position(cam: np.ndarray) -> tuple[float, float]:
    """Return the (y, x) of the map's peak as fractions of its height and width, at the
    centre of the peak's cell (first in reading order on ties); NaN for an empty map."""
    values = scaled(cam)
    if values is None:
        return float("nan"), float("nan")
    row, col = np.unravel_index(int(np.argmax(values)), values.shape)
    return float((row + 0.5) / values.shape[0]), float((col + 0.5) / values.shape[1])


def pointing_hit(cam: np.ndarray, mask: np.ndarray) -> bool:
    """Return whether the peak of the map, upsampled to the mask's size, lies on the mask.

    A map that is zero everywhere (or not finite) points nowhere and counts as a miss. On
    ties the first peak in reading order counts.
    """
    mask = np.asarray(mask, dtype=bool)
    values = at_size(cam, mask.shape)
    if values is None:
        return False
    return bool(mask.flat[int(np.argmax(values))])


def energy_share(cam: np.ndarray, mask: np.ndarray) -> float:
    """Return the share of the map's non-negative mass (after upsampling to the mask's size)
    that lies on the mask, in [0, 1]; NaN for a map with no positive mass."""
    mask = np.asarray(mask, dtype=bool)
    values = at_size(cam, mask.shape)
    if values is None:
        return float("nan")
    total = float(values.sum(dtype=np.float64))
    return float(values[mask].sum(dtype=np.float64)) / total if total > 0 else float("nan")


def spread(cam: np.ndarray, size: tuple[int, int] | None = None) -> dict[str, float]:
    """Return how widely the map spreads: ``entropy``, the Shannon entropy of the map read as
    a distribution over its pixels divided by its maximum log(pixels) (0: one pixel, 1:
    even), and ``above_half``, the share of pixels at or above half the maximum.

    With ``size`` the map is first upsampled to (height, width), so maps of different grids
    are compared on the same pixels. NaN for a map with no positive mass.
    """
    values = scaled(cam) if size is None else at_size(cam, size)
    if values is None:
        return {"entropy": float("nan"), "above_half": float("nan")}
    return _spread_of(values)


def _spread_of(values: np.ndarray) -> dict[str, float]:
    n = values.size
    p = values.astype(np.float64).ravel()
    p = p[p > 0] / p.sum()
    entropy = float(-(p * np.log(p)).sum() / np.log(n)) + 0.0 if n > 1 else 0.0
    return {"entropy": entropy, "above_half": float(np.mean(values >= 0.5))}


def chance_level(mask: np.ndarray) -> float:
    """Return the mask's share of the photo: the expected pointing hit of a random peak and
    the energy share of an even map."""
    mask = np.asarray(mask, dtype=bool)
    return float(mask.mean()) if mask.size else float("nan")


def localisation(
    cam: np.ndarray,
    mask: np.ndarray | None,
    size: tuple[int, int] | None = None,
    spread_size: tuple[int, int] | None = None,
) -> dict:
    """Return every figure above for one map: peak position, spread, and with a mask the
    pointing hit, energy share and chance level.

    The map is upsampled once to the mask's size (else ``size``, else kept on its grid) and
    every figure read from it (the same values the single functions give). ``spread_size``
    computes the spread at another size instead (a smaller one is faster and, for smooth
    upsampled maps, gives nearly the same figures).
    """
    if mask is not None:
        mask = np.asarray(mask, dtype=bool)
        size = mask.shape[:2]
    peak_y, peak_x = peak_position(cam)
    values = scaled(cam) if size is None else at_size(cam, tuple(size))
    out: dict = {"peak_y": peak_y, "peak_x": peak_x}
    if spread_size is not None:
        out.update(spread(cam, spread_size))
    elif values is None:
        out.update(entropy=float("nan"), above_half=float("nan"))
    else:
        out.update(_spread_of(values))
    if mask is not None:
        if values is None:
            out["pointing"], out["energy"] = False, float("nan")
        else:
            total = float(values.sum(dtype=np.float64))
            out["pointing"] = bool(mask.flat[int(np.argmax(values))])
            out["energy"] = float(values[mask].sum(dtype=np.float64)) / total
        out["chance"] = chance_level(mask)
    return out
