"""Draw the bundled sample image (a harbour at dusk) used by `make run`'s curl example."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

W, H = 1600, 900


def draw() -> Image.Image:
    y = np.linspace(0.0, 1.0, H)[:, None, None]
    top, horizon = np.array([40, 48, 110]), np.array([250, 150, 90])
    sky = top + (horizon - top) * y**1.6
    img = np.broadcast_to(sky, (H, W, 3)).copy()
    sea = slice(int(H * 0.62), H)
    depth = np.linspace(0, 1, H - int(H * 0.62))[:, None, None]
    img[sea] = np.array([200, 110, 80]) * (1 - depth) + np.array([20, 30, 60]) * depth
    rng = np.random.default_rng(7)
    ripples = rng.normal(0, 10, (H - int(H * 0.62), W, 1)) * (1 - depth)
    img[sea] += ripples
    im = Image.fromarray(np.clip(img, 0, 255).astype(np.uint8))
    d = ImageDraw.Draw(im)
    d.ellipse((1040, 420, 1180, 560), fill=(255, 210, 140))
    horizon_y = int(H * 0.62)
    x = 0
    while x < W * 0.45:  # town skyline on the left
        w, h = int(rng.integers(40, 110)), int(rng.integers(60, 240))
        d.rectangle((x, horizon_y - h, x + w, horizon_y), fill=(25, 22, 40))
        for wx in range(x + 8, x + w - 8, 18):
            for wy in range(horizon_y - h + 12, horizon_y - 10, 26):
                if rng.random() < 0.35:
                    d.rectangle((wx, wy, wx + 6, wy + 10), fill=(255, 200, 110))
        x += w + int(rng.integers(0, 12))
    for bx in (820, 1250, 1420):  # boats with masts
        d.polygon([(bx, horizon_y + 60), (bx + 120, horizon_y + 60), (bx + 100, horizon_y + 85),
                   (bx + 18, horizon_y + 85)], fill=(30, 25, 35))
        d.line((bx + 60, horizon_y + 60, bx + 60, horizon_y - 90), fill=(30, 25, 35), width=4)
    return im.filter(ImageFilter.GaussianBlur(0.8))


if __name__ == "__main__":
    out = Path(sys.argv[1] if len(sys.argv) > 1 else "src/framecast/assets/sample.jpg")
    draw().save(out, quality=85, optimize=True)
    print(out, out.stat().st_size)
