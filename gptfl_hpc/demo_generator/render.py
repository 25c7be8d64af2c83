"""Printed digits from the TrueType fonts that ship inside matplotlib's wheel, drawn the way
scikit-learn's handwritten digits were: a 32 x 32 binary bitmap counted in 4 x 4 blocks, i.e. an
8 x 8 image of ink fractions.

Each font draws each digit once per stroke width (``GLYPH_PIXELS`` high); every sample then takes
one of those glyphs through its own affine map -- slant, rotation, a height that fills most of
the bitmap, a stretched aspect, a shift -- in one batched ``grid_sample``. The random draws come
from one seeded NumPy generator, so a seed gives the same images on every run. Nothing here
reads any dataset: the glyphs come from the font files alone.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

#: The text fonts of matplotlib's ``mpl-data/fonts/ttf`` whose digits are ordinary lining figures
#: (the symbol, display and fallback fonts there have no digits or the same box for every one;
#: Computer Modern math italic has old-style figures).
FONT_FILES = (
    "DejaVuSans.ttf", "DejaVuSans-Bold.ttf", "DejaVuSans-Oblique.ttf", "DejaVuSans-BoldOblique.ttf",
    "DejaVuSansMono.ttf", "DejaVuSansMono-Bold.ttf", "DejaVuSansMono-Oblique.ttf", "DejaVuSansMono-BoldOblique.ttf",
    "DejaVuSerif.ttf", "DejaVuSerif-Bold.ttf", "DejaVuSerif-Italic.ttf", "DejaVuSerif-BoldItalic.ttf",
    "STIXGeneral.ttf", "STIXGeneralBol.ttf", "STIXGeneralItalic.ttf", "STIXGeneralBolIta.ttf",
    "cmr10.ttf", "cmb10.ttf", "cmss10.ttf", "cmti10.ttf", "cmtt10.ttf",
)
DIGITS = "0123456789"
STROKES = (0, 1, 2, 3, 4)  # extra stroke width in glyph pixels: pen strokes are bolder than type
GLYPH_PIXELS = 64  # font size of the sharp first rendering
CANVAS = 2 * GLYPH_PIXELS  # square canvas the glyph is centred on
BITMAP = 32  # the bitmap side before counting, as in the digits' source (UCI optdigits)
BLOCK = 4  # 32 / 4 = 8 pixels a side
SUPERSAMPLE = 4  # bitmap pixels are the coverage of 4 x 4 samples, then thresholded
CHUNK = 256  # samples per grid_sample call (bounds memory)

# The ranges of the random look of a sample.
SLANT = (-0.35, 0.2)  # x shear per unit height; negative leans right, as handwriting does
ROTATION_DEGREES = 12.0
HEIGHT = (BITMAP - 6, BITMAP)  # glyph height in bitmap pixels
ASPECT_STRETCH = (0.8, 1.35)
SHIFT = 2  # bitmap pixels either way


def font_directory() -> Path:
    import matplotlib

    return Path(matplotlib.get_data_path()) / "fonts" / "ttf"


@lru_cache(maxsize=1)
def glyph_bank() -> tuple[torch.Tensor, list[np.ndarray]]:
    """Every (font, stroke, digit) glyph, centred on a ``CANVAS`` square: float ``(F*S*10, 1, C, C)``
    coverage in [0, 1] and, per glyph, the canvas coordinates (x, y) of its ink's convex hull
    (an affine map's image of the ink has the bounding box of the hull's image)."""
    from PIL import Image, ImageDraw, ImageFont

    images, inked = [], []
    for name in FONT_FILES:
        font = ImageFont.truetype(str(font_directory() / name), GLYPH_PIXELS)
        for stroke in STROKES:
            for digit in DIGITS:
                canvas = Image.new("L", (CANVAS, CANVAS), 0)
                draw = ImageDraw.Draw(canvas)
                left, top, right, bottom = draw.textbbox((0, 0), digit, font=font, stroke_width=stroke)
                origin = ((CANVAS - (right - left)) / 2 - left, (CANVAS - (bottom - top)) / 2 - top)
                draw.text(origin, digit, font=font, fill=255, stroke_width=stroke, stroke_fill=255)
                pixels = torch.from_numpy(np.asarray(canvas, dtype=np.float32) / 255.0)
                images.append(pixels)
                inked.append(_hull(pixels))
    return torch.stack(images).unsqueeze(1), inked


def _hull(pixels: torch.Tensor) -> np.ndarray:
    from scipy.spatial import ConvexHull

    ys, xs = np.nonzero(pixels.numpy() >= 0.5)
    # Each inked pixel covers the unit square from its corner (x, y).
    corners = np.concatenate([np.stack([xs + dx, ys + dy], axis=1) for dx in (0, 1) for dy in (0, 1)])
    return corners[ConvexHull(corners).vertices].astype(np.float64)


def glyph_index(font: int, stroke: int, digit: int) -> int:
    return (font * len(STROKES) + stroke) * len(DIGITS) + digit


def render_digits(count: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """``count`` glyphs, classes in turn: float32 ``(count, 8, 8)`` ink fractions in [0, 1] and
    their int64 labels (the digit)."""
    rng = np.random.default_rng(seed)
    labels = np.arange(count, dtype=np.int64) % len(DIGITS)
    fonts = rng.integers(len(FONT_FILES), size=count)
    strokes = rng.integers(len(STROKES), size=count)
    slants = rng.uniform(*SLANT, size=count)
    angles = np.deg2rad(rng.uniform(-ROTATION_DEGREES, ROTATION_DEGREES, size=count))
    heights = rng.uniform(*HEIGHT, size=count)
    stretches = rng.uniform(*ASPECT_STRETCH, size=count)
    shifts = rng.uniform(-SHIFT, SHIFT, size=(count, 2))

    bank, inked = glyph_bank()
    out = np.empty((count, BITMAP // BLOCK, BITMAP // BLOCK), dtype=np.float32)
    for start in range(0, count, CHUNK):
        rows = range(start, min(start + CHUNK, count))
        glyphs = [glyph_index(int(fonts[i]), int(strokes[i]), int(labels[i])) for i in rows]
        maps = [_bitmap_from_glyph(inked[g], slants[i], angles[i], heights[i], stretches[i], shifts[i])
                for g, i in zip(glyphs, rows)]
        bitmaps = _sample(bank[glyphs], torch.from_numpy(np.stack(maps).astype(np.float32)))
        out[start : start + len(glyphs)] = F.avg_pool2d(bitmaps, BLOCK).squeeze(1).numpy()
    return out, labels


def _bitmap_from_glyph(hull: np.ndarray, slant: float, angle: float, height: float, stretch: float,
                       shift: np.ndarray) -> np.ndarray:
    """The 2 x 3 map from bitmap coordinates to canvas coordinates for one sample: the glyph's ink
    slanted and rotated, scaled to ``height`` (its width stretched), centred, shifted."""
    cos, sin = np.cos(angle), np.sin(angle)
    pose = np.array([[cos, -sin], [sin, cos]]) @ np.array([[1.0, slant], [0.0, 1.0]])
    moved = hull @ pose.T
    low, high = moved.min(axis=0), moved.max(axis=0)
    width, tall = high - low
    scale_y = height / tall
    scale_x = min(width * scale_y * stretch, BITMAP) / width
    forward = np.diag([scale_x, scale_y]) @ pose  # canvas -> bitmap, linear part
    inverse = np.linalg.inv(forward)
    centre_out = BITMAP / 2 + shift
    # bitmap point q -> canvas point p = inverse (q - centre_out) + pose^-1 (centre of the posed box)
    offset = np.linalg.solve(pose, (low + high) / 2) - inverse @ centre_out
    return np.concatenate([inverse, offset[:, None]], axis=1)


def _sample(glyphs: torch.Tensor, maps: torch.Tensor) -> torch.Tensor:
    """Binary ``(N, 1, BITMAP, BITMAP)`` bitmaps: each pixel inked when over half of it is covered."""
    side = BITMAP * SUPERSAMPLE
    centres = (torch.arange(side, dtype=torch.float32) + 0.5) / SUPERSAMPLE  # bitmap coordinates
    qy, qx = torch.meshgrid(centres, centres, indexing="ij")
    q = torch.stack([qx, qy, torch.ones_like(qx)], dim=-1).reshape(-1, 3)  # (side*side, 3)
    canvas_points = torch.einsum("nij,pj->npi", maps, q)  # (N, side*side, 2) in canvas pixels
    grid = (canvas_points + 0.5) / CANVAS * 2 - 1  # align_corners=False normalisation
    coverage = F.grid_sample(glyphs, grid.reshape(-1, side, side, 2), mode="bilinear", padding_mode="zeros",
                             align_corners=False)
    return (F.avg_pool2d(coverage, SUPERSAMPLE) >= 0.5).to(torch.float32)
