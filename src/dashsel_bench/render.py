"""Offline image sources and digit rendering for the ``digits5`` suite.

Everything here reads files that installed wheels ship, so building the suite needs no network:

* photographs from scikit-image's bundled ``skimage/data`` folder (read straight from the
  files, never through ``skimage.data.<name>()``, whose fetcher may try to download) and
  scikit-learn's ``load_sample_images`` (china, flower);
* TrueType fonts bundled with matplotlib (DejaVu, STIX, Computer Modern), drawn with Pillow.

The recipes (:func:`blend_mnistm`, :func:`render_syn`, :func:`render_svhn_like`) follow the
published descriptions of MNIST-M (Ganin & Lempitsky 2015), SYN Numbers (Ganin & Lempitsky
2015) and the look of SVHN (Netzer et al. 2011). See ``docs/datasets.md``.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from functools import cache
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFilter, ImageFont

from dashsel.errors import DataError

#: Side of every image the suite produces.
SIZE = 32

#: Photos used as backgrounds for training images and for test images. Kept apart so that a
#: test image never shows a crop of a photo seen in training (as MNIST-M's train/test split of
#: BSDS500 backgrounds). Names are files in ``skimage/data`` or ``sklearn:<name>``.
TRAIN_PHOTOS: tuple[str, ...] = (
    "astronaut.png",
    "chelsea.png",
    "coffee.png",
    "rocket.jpg",
    "motorcycle_left.png",
    "ihc.png",
    "hubble_deep_field.jpg",
    "brick.png",
    "grass.png",
)
TEST_PHOTOS: tuple[str, ...] = (
    "sklearn:china.jpg",
    "sklearn:flower.jpg",
    "retina.jpg",
    "gravel.png",
)

#: Fonts for SYN (many styles, as SYN Numbers used ~1,000 Windows fonts) and for the SVHN-like
#: domain (sans/bold faces, closer to house-number plates). Files in matplotlib's mpl-data.
SYN_FONTS: tuple[str, ...] = (
    "DejaVuSans.ttf",
    "DejaVuSans-Oblique.ttf",
    "DejaVuSansMono.ttf",
    "DejaVuSansMono-Oblique.ttf",
    "DejaVuSerif.ttf",
    "DejaVuSerif-Italic.ttf",
    "DejaVuSerif-Bold.ttf",
    "STIXGeneral.ttf",
    "STIXGeneralItalic.ttf",
    "cmr10.ttf",
    "cmss10.ttf",
    "cmtt10.ttf",
)
SVHN_FONTS: tuple[str, ...] = (
    "DejaVuSans-Bold.ttf",
    "DejaVuSans-BoldOblique.ttf",
    "DejaVuSansMono-Bold.ttf",
    "DejaVuSansMono-BoldOblique.ttf",
    "DejaVuSerif-BoldItalic.ttf",
    "STIXGeneralBol.ttf",
    "STIXGeneralBolIta.ttf",
    "cmb10.ttf",
)


# --- sources --------------------------------------------------------------------------------
def _photo_path(name: str) -> Path:
    if name.startswith("sklearn:"):
        import sklearn.datasets

        path = Path(sklearn.datasets.__file__).parent / "images" / name.split(":", 1)[1]
    else:
        import skimage.data

        path = Path(skimage.data.__file__).parent / name
    if not path.is_file():
        raise DataError(f"bundled photo {name!r} not found at {path}")
    return path


@cache
def load_photo(name: str) -> np.ndarray:
    """A bundled photograph as an (H, W, 3) uint8 array (grey photos are repeated to RGB)."""
    with Image.open(_photo_path(name)) as im:
        return np.asarray(im.convert("RGB"), dtype=np.uint8)


def load_photos(names: Sequence[str]) -> list[np.ndarray]:
    """:func:`load_photo` for each name."""
    return [load_photo(n) for n in names]


def font_path(name: str) -> Path:
    """Path of a font file bundled with matplotlib."""
    import matplotlib

    path = Path(matplotlib.get_data_path()) / "fonts" / "ttf" / name
    if not path.is_file():
        raise DataError(f"bundled font {name!r} not found at {path}")
    return path


@cache
def _font(name: str, size: int) -> ImageFont.FreeTypeFont:
    return ImageFont.truetype(str(font_path(name)), size)


def random_crop(photo: np.ndarray, side: int, out: int, rng: np.random.Generator) -> np.ndarray:
    """A ``side`` x ``side`` crop at a random place, resized to ``out`` x ``out`` (uint8 RGB)."""
    h, w = photo.shape[:2]
    side = int(min(side, h, w))
    top = int(rng.integers(0, h - side + 1))
    left = int(rng.integers(0, w - side + 1))
    crop = photo[top : top + side, left : left + side]
    if side == out:
        return crop.copy()
    return np.asarray(Image.fromarray(crop).resize((out, out), Image.BILINEAR))


# --- MNIST-M ----------------------------------------------------------------------------------
def blend_mnistm(
    digits: np.ndarray, photos: Sequence[np.ndarray], rng: np.random.Generator
) -> np.ndarray:
    """MNIST-M blend: ``|crop - digit|`` per channel, crop from a random photo.

    Parameters
    ----------
    digits : ndarray (N, 32, 32) uint8
        Grey digits, white on black.
    photos : sequence of ndarray (H, W, 3) uint8
        Background photographs.
    rng : numpy Generator

    Returns
    -------
    ndarray (N, 32, 32, 3) uint8
    """
    n = digits.shape[0]
    out = np.empty((n, SIZE, SIZE, 3), dtype=np.uint8)
    for i in range(n):
        photo = photos[int(rng.integers(len(photos)))]
        # MNIST-M cut native-scale patches from BSDS500 (481 x 321 photos, busy texture). Our
        # photos are larger and smoother, so crops are zoomed out 1-3x to give similar clutter.
        side = int(rng.integers(SIZE, 3 * SIZE + 1))
        crop = random_crop(photo, side, SIZE, rng).astype(np.int16)
        out[i] = np.abs(crop - digits[i].astype(np.int16)[:, :, None]).astype(np.uint8)
    return out


# --- rendered digits --------------------------------------------------------------------------
def _digit_mask(
    digit: int,
    font: str,
    rng: np.random.Generator,
    *,
    height: float,
    neighbours: float,
    rotate: float,
    shear: float,
    aspect: tuple[float, float],
    canvas: int = 2 * SIZE,
) -> np.ndarray:
    """A float mask in [0, 1] (SIZE x SIZE) with ``digit`` centred and maybe neighbours.

    Drawn at twice the final size then reduced, which anti-aliases the strokes.
    """
    px = max(8, round(height * canvas))
    f = _font(font, px)
    im = Image.new("L", (canvas * 2, canvas), 0)  # wide, so neighbours are not clipped early
    draw = ImageDraw.Draw(im)
    text = str(digit)
    x0, y0, x1, y1 = draw.textbbox((0, 0), text, font=f)
    cx, cy = canvas, canvas // 2
    ox, oy = cx - (x0 + x1) / 2, cy - (y0 + y1) / 2
    draw.text((ox, oy), text, fill=255, font=f)
    gap = float(rng.uniform(0.02, 0.18)) * px
    if rng.random() < neighbours:  # digit to the left (house numbers, SYN strings)
        t = str(int(rng.integers(10)))
        a0, _, a1, _ = draw.textbbox((0, 0), t, font=f)
        draw.text((ox + x0 - gap - a1, oy), t, fill=255, font=f)
    if rng.random() < neighbours:  # and to the right
        t = str(int(rng.integers(10)))
        a0, _, a1, _ = draw.textbbox((0, 0), t, font=f)
        draw.text((ox + x1 + gap - a0, oy), t, fill=255, font=f)
    # Affine: rotation, shear, anisotropic scale and a small shift about the canvas centre.
    th = np.deg2rad(rng.uniform(-rotate, rotate))
    sh = rng.uniform(-shear, shear)
    sx = rng.uniform(*aspect)
    shift = rng.uniform(-0.06, 0.06, size=2) * canvas
    c, s = np.cos(th), np.sin(th)
    fwd = np.array([[c, -s], [s, c]]) @ np.array([[1.0, sh], [0.0, 1.0]]) @ np.diag([sx, 1.0])
    inv = np.linalg.inv(fwd)
    # PIL maps output (x, y) to input inv @ (x - out_c - shift) + in_c.
    out_c = np.array([canvas / 2, canvas / 2]) + shift
    in_c = np.array([cx, cy], dtype=float)
    off = in_c - inv @ out_c
    coeffs = (inv[0, 0], inv[0, 1], off[0], inv[1, 0], inv[1, 1], off[1])
    im = im.transform((canvas, canvas), Image.AFFINE, coeffs, resample=Image.BILINEAR)
    im = im.resize((SIZE, SIZE), Image.BILINEAR)
    return np.asarray(im, dtype=np.float32) / 255.0


def _contrasting_colours(
    rng: np.random.Generator, min_diff: float
) -> tuple[np.ndarray, np.ndarray]:
    lum = np.array([0.299, 0.587, 0.114])
    while True:
        bg, fg = rng.uniform(0, 255, size=(2, 3))
        if abs(float(lum @ (fg - bg))) >= min_diff:
            return bg, fg


def render_syn(labels: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """SYN-Numbers-like images: one font digit (plus neighbours) on a flat random colour.

    Random font, size, position, rotation, fg/bg colours, blur and noise, as the SYN recipe.

    Returns
    -------
    ndarray (N, 32, 32, 3) uint8
    """
    out = np.empty((len(labels), SIZE, SIZE, 3), dtype=np.uint8)
    for i, lab in enumerate(labels):
        font = SYN_FONTS[int(rng.integers(len(SYN_FONTS)))]
        m = _digit_mask(
            int(lab),
            font,
            rng,
            height=float(rng.uniform(0.45, 0.7)),
            neighbours=0.5,
            rotate=15.0,
            shear=0.1,
            aspect=(0.9, 1.2),
        )
        sigma = float(rng.uniform(0.0, 1.0))
        if sigma > 0.2:
            m = _blur(m, sigma)
        bg, fg = _contrasting_colours(rng, 50.0)
        img = bg * (1 - m[:, :, None]) + fg * m[:, :, None]
        img += rng.normal(0, 4.0, size=img.shape)
        out[i] = np.clip(img, 0, 255).astype(np.uint8)
    return out


def render_svhn_like(
    labels: np.ndarray, photos: Sequence[np.ndarray], rng: np.random.Generator
) -> np.ndarray:
    """Street-number-like images: bold font digits on photo crops, with clutter.

    Each image: a crop of a real photo (zoomed by a random factor), sometimes a plate behind
    the digits, the centre digit with neighbours most of the time, low and varying contrast,
    rotation/shear/aspect distortion, uneven lighting, blur, noise and JPEG compression.

    Returns
    -------
    ndarray (N, 32, 32, 3) uint8
    """
    out = np.empty((len(labels), SIZE, SIZE, 3), dtype=np.uint8)
    yy, xx = np.mgrid[0:SIZE, 0:SIZE].astype(np.float32) / (SIZE - 1) - 0.5
    lum = np.array([0.299, 0.587, 0.114])
    for i, lab in enumerate(labels):
        photo = photos[int(rng.integers(len(photos)))]
        bg = random_crop(photo, int(rng.integers(24, 120)), SIZE, rng).astype(np.float32)
        if rng.random() < 0.4:  # a plaque behind the number: flat-ish colour patch with a rim
            plate = rng.uniform(0, 255, size=3)
            alpha = float(rng.uniform(0.6, 0.95))
            top, bot = int(rng.integers(0, 6)), int(rng.integers(26, 33))
            bg[top:bot] = alpha * plate + (1 - alpha) * bg[top:bot]
        font = SVHN_FONTS[int(rng.integers(len(SVHN_FONTS)))]
        m = _digit_mask(
            int(lab),
            font,
            rng,
            # SVHN crops are tight: the digit fills most of the height; house-number faces
            # are often condensed (narrow) and seen at an angle (shear).
            height=float(rng.uniform(0.7, 0.95)),
            neighbours=0.75,
            rotate=10.0,
            shear=0.3,
            aspect=(0.55, 0.9),
        )
        # Foreground colour: the local background shifted by a modest luminance step, so
        # contrast is often low (as in SVHN), sometimes darker, sometimes brighter.
        base = bg.reshape(-1, 3).mean(0)
        step = float(rng.uniform(50, 140)) * (1 if rng.random() < 0.5 else -1)
        if not 0 <= float(lum @ base) + step <= 255:
            step = -step
        fg = np.clip(base + step + rng.normal(0, 25, size=3), 0, 255)
        img = bg * (1 - m[:, :, None]) + fg * m[:, :, None]
        # Uneven lighting: a linear gradient across the image.
        g = 1 + rng.uniform(-0.35, 0.35) * xx + rng.uniform(-0.35, 0.35) * yy
        img = img * g[:, :, None]
        img = _blur_rgb(img, float(rng.uniform(0.3, 1.2)))
        img += rng.normal(0, rng.uniform(2, 8), size=img.shape)
        out[i] = _jpeg(np.clip(img, 0, 255).astype(np.uint8), int(rng.integers(30, 80)))
    return out


def _blur(m: np.ndarray, sigma: float) -> np.ndarray:
    im = Image.fromarray((m * 255).astype(np.uint8))
    return np.asarray(im.filter(ImageFilter.GaussianBlur(sigma)), dtype=np.float32) / 255.0


def _blur_rgb(img: np.ndarray, sigma: float) -> np.ndarray:
    im = Image.fromarray(np.clip(img, 0, 255).astype(np.uint8))
    return np.asarray(im.filter(ImageFilter.GaussianBlur(sigma)), dtype=np.float32)


def _jpeg(img: np.ndarray, quality: int) -> np.ndarray:
    buf = io.BytesIO()
    Image.fromarray(img).save(buf, format="JPEG", quality=quality)
    buf.seek(0)
    with Image.open(buf) as im:
        return np.asarray(im.convert("RGB"), dtype=np.uint8)


def grey_to_rgb(images: np.ndarray) -> np.ndarray:
    """(N, H, W) grey to (N, H, W, 3) by repeating the channel."""
    return np.repeat(images[:, :, :, None], 3, axis=3)


def resize_stack(images: np.ndarray, size: int = SIZE) -> np.ndarray:
    """Resize (N, H, W[, 3]) uint8 images to ``size`` x ``size`` with bilinear filtering."""
    if images.shape[1:3] == (size, size):
        return images
    return np.stack(
        [np.asarray(Image.fromarray(im).resize((size, size), Image.BILINEAR)) for im in images]
    )
