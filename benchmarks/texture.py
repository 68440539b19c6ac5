"""Synthetic imagery that compresses like real aerial/satellite scenes, for the benchmarks.

Uniform or Gaussian noise is the worst case for a codec and smooth gradients the
best; neither is what users have. With no network (no real Landsat scene to
download) the benchmarks use :func:`landscape`: a 1/f^β spectral noise field
(natural terrain and vegetation have power spectra close to 1/f^2) broken into
agricultural fields (a Voronoi partition, each field its own tone and
texture strength), a few straight roads, and a little sensor noise. Colour
channels are correlated as in real RGB. :func:`photo` makes a smaller
"photo": the same texture at a coarser scale, for PNG/JPEG datasets;
:func:`smooth` the landscape seen through softer optics (smoother imagery, on
which lossless codecs depend more on their predictor).

Example:
    >>> pixels = landscape(256, seed=0)
    >>> pixels.shape, pixels.dtype
    ((256, 256, 3), dtype('uint8'))
"""
from __future__ import annotations

import numpy as np


def spectral_noise(size: int, beta: float, rng: np.random.Generator) -> np.ndarray:
    """A ``size``×``size`` float32 field with power spectrum ∝ 1/f^β, scaled to zero mean and unit std."""
    fy = np.fft.fftfreq(size).astype(np.float32)[:, None]
    fx = np.fft.rfftfreq(size).astype(np.float32)[None, :]
    radius = np.sqrt(fx * fx + fy * fy)
    radius[0, 0] = 1.0
    amplitude = radius ** (-beta / 2)
    amplitude[0, 0] = 0.0
    phase = rng.uniform(0, 2 * np.pi, amplitude.shape).astype(np.float32)
    field = np.fft.irfft2(amplitude * np.exp(1j * phase), s=(size, size)).astype(np.float32)
    field -= field.mean()
    field /= field.std() + 1e-12
    return field


def fields(size: int, n_fields: int, rng: np.random.Generator) -> np.ndarray:
    """A label image (int32) of ``n_fields`` Voronoi cells, computed on a coarse grid then upsampled."""
    step = 8
    coarse = size // step
    centres = rng.uniform(0, coarse, (n_fields, 2)).astype(np.float32)
    yy, xx = np.mgrid[0:coarse, 0:coarse].astype(np.float32)
    best = np.full((coarse, coarse), np.inf, np.float32)
    labels = np.zeros((coarse, coarse), np.int32)
    for k, (cy, cx) in enumerate(centres):
        dist = (yy - cy) ** 2 + (xx - cx) ** 2
        closer = dist < best
        best[closer] = dist[closer]
        labels[closer] = k
    return np.repeat(np.repeat(labels, step, axis=0), step, axis=1)[:size, :size]


def landscape(size: int, seed: int = 0, n_fields: int = 60) -> np.ndarray:
    """A ``size``×``size``×3 uint8 aerial-like scene (see the module doc)."""
    rng = np.random.default_rng(seed)
    terrain = spectral_noise(size, 2.0, rng)
    detail = spectral_noise(size, 1.2, rng)
    labels = fields(size, n_fields, rng)
    tone = rng.uniform(-1.2, 1.2, (n_fields, 3)).astype(np.float32)
    roughness = rng.uniform(0.2, 1.0, n_fields).astype(np.float32)
    mixing = np.array([[1.0, 0.8, 0.6], [0.3, 0.5, 0.4], [0.2, 0.3, 0.6]], np.float32)
    image = np.empty((size, size, 3), np.float32)
    for c in range(3):
        image[..., c] = (tone[labels, c] + mixing[0, c] * terrain + mixing[1, c] * roughness[labels] * detail)
    for _ in range(max(1, size // 1024) * 3):  # roads: bright straight lines a few pixels wide
        (y0, x0), (y1, x1) = rng.uniform(0, size, (2, 2))
        n = int(np.hypot(y1 - y0, x1 - x0))
        ys = np.linspace(y0, y1, n).astype(int).clip(0, size - 4)
        xs = np.linspace(x0, x1, n).astype(int).clip(0, size - 4)
        for d in range(3):
            image[ys + d, xs] = 2.5
    image = image * 28 + 110 + rng.normal(0, 2.0, image.shape).astype(np.float32)
    return image.clip(0, 255).astype(np.uint8)


def photo(height: int, width: int, seed: int = 0) -> np.ndarray:
    """A ``height``×``width``×3 uint8 photo-like image (the landscape texture, cropped)."""
    return landscape(max(height, width), seed=seed, n_fields=12)[:height, :width]


def smooth(size: int, seed: int = 0, sigma: float = 3.0) -> np.ndarray:
    """The landscape blurred by a Gaussian of ``sigma`` pixels: smoother imagery (higher resolution, softer optics).

    >>> smooth(64, seed=0).std() < landscape(64, seed=0).std()
    True
    """
    import cv2
    return cv2.GaussianBlur(landscape(size, seed=seed), (0, 0), sigma)


def landscape_dataset(dpath, n_images: int, size: int = 4096) -> str:
    """``n_images`` landscape GeoTIFFs (striped DEFLATE: caches convert them) and a kwcoco json over them.

    Made once under ``dpath`` (benchmarks/.data, not committed); returns the json's path.
    """
    from pathlib import Path

    import kwcoco

    from ndpatch.demo import write_raster
    dpath = Path(dpath)
    fpath = dpath / f"landscape{size}x{n_images}.kwcoco.json"
    if fpath.exists():
        return str(fpath)
    dpath.mkdir(parents=True, exist_ok=True)
    dset = kwcoco.CocoDataset()
    for i in range(n_images):
        path = dpath / f"landscape_{size}_{i:02d}.tif"
        if not path.exists():
            write_raster(path, landscape(size, seed=100 + i), options=["COMPRESS=DEFLATE"])
        dset.add_image(file_name=str(path), width=size, height=size)
    dset.dump(str(fpath))
    return str(fpath)
