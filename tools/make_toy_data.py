"""Write a small, deterministic GTA5-style source and Cityscapes-style target data set in the real on-disk formats.

The toy pair exercises the real converters, datasets and pipelines (``tools/dataset_converters/gta5.py`` and
``cityscapes.py``, ``GTA5Dataset``, ``CityscapesDataset``, ``UDADataset``) at a small size:

.. code-block:: none

    OUT_DIR/
    ├── gta5/                                  # 320x176 images ("1914x1052" scaled), palette PNG labels with
    │                                          # Cityscapes ids (00001: 320x178, a size mismatch as in GTA5)
    │   ├── images/00001.png ...
    │   └── labels/00001.png ...
    └── cityscapes/                            # 512x256 images ("2048x1024" scaled)
        ├── leftImg8bit/{train,val}/<city>/<city>_000000_0000NN_leftImg8bit.png
        └── gtFine/{train,val}/<city>/<city>_000000_0000NN_gtFine_labelIds.png

Scenes are street-like layouts (sky, buildings, road, sidewalks, vegetation, terrain, poles with signs, cars,
people) drawn as simple shapes on a shared geometry model. The two domains differ in appearance only: colour
palette, texture and lighting (source: saturated "rendered" colours, smooth shading; target: shifted, washed-out
colours, sensor noise, textured facades and a strong illumination gradient), which gives a genuine domain gap. A few
pixels carry Cityscapes ids without a trainId (0 unlabeled, 1 ego vehicle, 4 static) so the converters' 255 mapping
is exercised, and ``--num-size-mismatch`` source labels are written at a different size than their image, as in
the real GTA5 data.

Shift families (``--shift NAME``, issue "does the procedure help on shifts it was not tuned on"): the source is
always the same; the target differs from it by one kind of shift (:data:`SHIFTS`):

- ``toy`` (default, ``data/toy``): palette, textures, side illumination, sensor noise and gamma together;
- ``colour``: colour and illumination alone (another camera's palette, a white-balance cast, brighter);
- ``sensor``: the camera alone (noise, blur, vignette, gamma), the source's palette and look otherwise;
- ``texture``: texture alone (facade windows, leaves, road grain, striped sidewalks and terrain, car panels);
- ``layout``: the scene layout alone (a lower horizon, bigger and more cars, fewer people and poles), the source's
  appearance.

Harder families (issue "later stages that earn their place"), where the first round leaves some classes near chance:

- ``colour_sensor``: ``colour`` and ``sensor`` together (another palette and white balance, heavy noise, blur,
  vignette, a strong gamma);
- ``texture_layout``: ``texture`` and ``layout`` together;
- ``swap``: two pairs of classes trade their source colours (sidewalk and terrain, person and pole): the colour
  that means one class in the source means the other in the target, so only shape and context tell them apart;
- ``fog``: a haze that thickens towards the horizon (the far half of the scene fades into a grey-white veil),
  with less contrast everywhere; small far objects (poles, signs, lights, people) all but vanish.

Usage: ``python tools/make_toy_data.py OUT_DIR [--seed 0] [--shift toy]`` (a few seconds).
"""
import argparse
import os
import os.path as osp

import cv2
import numpy as np
from PIL import Image

# Cityscapes label ids used by the toy scenes (see cityscapesscripts.helpers.labels)
UNLABELED, EGO, STATIC = 0, 1, 4
ROAD, SIDEWALK, BUILDING, FENCE, POLE, LIGHT, SIGN, VEGETATION, TERRAIN, SKY, PERSON, CAR = (
    7, 8, 11, 13, 17, 19, 20, 21, 22, 23, 24, 26)

# Base appearance per domain, BGR. The target "camera" moves every class colour part of the way
# (TARGET_COLOUR_SHIFT) towards another hue and saturation, so that colour transfers only partly.
SOURCE_COLOURS = {
    ROAD: (120, 70, 110), SIDEWALK: (200, 120, 220), BUILDING: (90, 90, 90), FENCE: (150, 150, 190),
    POLE: (40, 40, 40), LIGHT: (30, 170, 250), SIGN: (0, 220, 220), VEGETATION: (40, 160, 60),
    TERRAIN: (150, 230, 150), SKY: (230, 160, 90), PERSON: (60, 20, 220), CAR: (150, 30, 20),
    UNLABELED: (0, 0, 0), EGO: (20, 20, 20), STATIC: (110, 100, 90)}
TARGET_CAMERA = {
    ROAD: (95, 110, 100), SIDEWALK: (150, 165, 175), BUILDING: (120, 135, 160), FENCE: (110, 120, 120),
    POLE: (100, 110, 130), LIGHT: (60, 90, 120), SIGN: (140, 150, 60), VEGETATION: (70, 110, 95),
    TERRAIN: (90, 150, 160), SKY: (215, 210, 200), PERSON: (120, 100, 150), CAR: (80, 60, 90),
    UNLABELED: (30, 30, 30), EGO: (50, 50, 50), STATIC: (120, 130, 140)}
TARGET_COLOUR_SHIFT = 0.5
PALETTE = {
    'source': SOURCE_COLOURS,
    'target': {c: tuple(round((1 - TARGET_COLOUR_SHIFT) * s + TARGET_COLOUR_SHIFT * t)
                        for s, t in zip(SOURCE_COLOURS[c], TARGET_CAMERA[c])) for c in SOURCE_COLOURS},
}

CITIES = {'train': ('toyburg', 'mockheim'), 'val': ('valtown', )}

# Another camera for the `colour` family: cool, desaturated, bright
COLOUR_CAMERA = {
    ROAD: (150, 120, 90), SIDEWALK: (210, 190, 160), BUILDING: (170, 140, 120), FENCE: (170, 170, 140),
    POLE: (90, 80, 70), LIGHT: (120, 200, 230), SIGN: (90, 200, 170), VEGETATION: (120, 170, 90),
    TERRAIN: (150, 200, 170), SKY: (250, 220, 190), PERSON: (150, 90, 170), CAR: (200, 110, 90),
    UNLABELED: (10, 10, 10), EGO: (40, 40, 40), STATIC: (150, 150, 120)}
PALETTE['colour'] = {c: tuple(round(0.4 * s + 0.6 * t) for s, t in zip(SOURCE_COLOURS[c], COLOUR_CAMERA[c]))
                     for c in SOURCE_COLOURS}

# The `swap` family: sidewalk and terrain, person and pole trade their source colours
SWAPPED = {SIDEWALK: TERRAIN, TERRAIN: SIDEWALK, PERSON: POLE, POLE: PERSON}
PALETTE['swap'] = {c: SOURCE_COLOURS[SWAPPED.get(c, c)] for c in SOURCE_COLOURS}

# The layout of the scenes (draw_layout): horizon height (fraction of the image height), counts and sizes of
# objects. DEFAULT_LAYOUT is the layout of every family but `layout`.
DEFAULT_LAYOUT = dict(horizon=(0.38, 0.5), trees=(1, 4), fence=0.7, poles=(1, 4), cars=(1, 4), car_scale=1.0,
                      people=(1, 4), person_scale=1.0)
# The target look of each family (render): palette, textures (facade windows, leaves, road grain; `stripes`: also
# striped sidewalks/terrain and car panels), shading ('vertical': the source's soft shading, 'side': a strong
# illumination gradient), white balance (B, G, R gains), noise and blur (sigma), vignette strength, gamma, layout.
SHIFTS = {
    'toy': dict(palette='target', texture=True, shading='side', noise=10.0, gamma=0.8),
    'colour': dict(palette='colour', shading='vertical', white_balance=(1.15, 1.0, 0.8), noise=3.0, gamma=0.85),
    'sensor': dict(palette='source', shading='vertical', noise=18.0, blur=1.2, vignette=0.6, gamma=0.6),
    'texture': dict(palette='source', texture=True, stripes=True, shading='vertical', noise=3.0),
    'layout': dict(palette='source', shading='vertical', noise=3.0,
                   layout=dict(horizon=(0.55, 0.65), cars=(3, 6), car_scale=1.5, people=(0, 2), poles=(0, 2))),
}
SHIFTS['colour_sensor'] = dict(SHIFTS['colour'], noise=18.0, blur=1.2, vignette=0.6, gamma=0.6)
SHIFTS['texture_layout'] = dict(SHIFTS['texture'], layout=SHIFTS['layout']['layout'])
SHIFTS['swap'] = dict(palette='swap', shading='vertical', noise=3.0)
SHIFTS['fog'] = dict(palette='source', shading='vertical', noise=3.0, haze=0.85, contrast=0.7)
FOG_COLOUR = (205, 205, 200)  # BGR


def draw_layout(rng, h, w, layout=None):
    """Draw one street-scene label map with Cityscapes label ids (uint8, shape (h, w)); ``layout`` overrides
    :data:`DEFAULT_LAYOUT`."""
    lay = dict(DEFAULT_LAYOUT, **(layout or {}))
    lab = np.full((h, w), SKY, np.uint8)
    horizon = int(h * rng.uniform(*lay['horizon']))
    vx = int(w * rng.uniform(0.4, 0.6))  # vanishing point
    # buildings along the horizon
    x = 0
    while x < w:
        bw = int(w * rng.uniform(0.08, 0.22))
        top = int(horizon - h * rng.uniform(0.1, 0.38))
        lab[max(top, 0):horizon + 1, x:x + bw] = BUILDING
        x += bw + int(w * rng.uniform(0.0, 0.04))
    # ground: terrain/sidewalk/road as a perspective trapezoid
    lab[horizon:, :] = TERRAIN
    sw_half = w * rng.uniform(0.55, 0.8)
    road_half = sw_half * rng.uniform(0.55, 0.75)
    sidewalk = np.array([[vx - 2, horizon], [vx + 2, horizon], [vx + sw_half, h], [vx - sw_half, h]], np.int32)
    cv2.fillPoly(lab, [sidewalk], SIDEWALK)
    road = np.array([[vx - 1, horizon], [vx + 1, horizon], [vx + road_half, h], [vx - road_half, h]], np.int32)
    cv2.fillPoly(lab, [road], ROAD)
    # vegetation: trees (crowns) and bushes
    for _ in range(rng.integers(*lay['trees'])):
        cx, cy = int(rng.uniform(0, w)), int(horizon - h * rng.uniform(0.0, 0.2))
        cv2.ellipse(lab, (cx, cy), (int(w * rng.uniform(0.04, 0.1)), int(h * rng.uniform(0.06, 0.14))), 0, 0, 360,
                    VEGETATION, -1)
    if rng.random() < lay['fence']:
        fy = horizon + int(h * 0.03)
        fx = int(rng.uniform(0, w * 0.6))
        lab[fy - int(h * 0.05):fy, fx:fx + int(w * rng.uniform(0.15, 0.35))] = FENCE
    # poles with signs / lights
    for _ in range(rng.integers(*lay['poles'])):
        px = int(rng.uniform(0.05, 0.95) * w)
        base = int(horizon + (h - horizon) * rng.uniform(0.1, 0.5))
        top = int(horizon - h * rng.uniform(0.15, 0.3))
        pw = max(2, int(w * 0.008 * (base - horizon + 10) / (h - horizon + 10) * 2))
        lab[top:base, px:px + pw] = POLE
        s = max(3, int(pw * 2.5))
        lab[top:top + s, px - s // 2:px + pw + s // 2] = SIGN if rng.random() < 0.6 else LIGHT
    # cars on the road and people on the sidewalk (scaled with their distance from the horizon)
    for _ in range(rng.integers(*lay['cars'])):
        t = rng.uniform(0.25, 0.9)
        cy = int(horizon + (h - horizon) * t)
        half = road_half * t
        cx = int(vx + rng.uniform(-0.7, 0.7) * half)
        cw, ch = int(w * 0.2 * t * lay['car_scale']) + 4, int(h * 0.14 * t * lay['car_scale']) + 3
        cv2.rectangle(lab, (cx - cw // 2, cy - ch), (cx + cw // 2, cy), CAR, -1)
        cv2.rectangle(lab, (cx - cw // 3, cy - ch - ch // 2), (cx + cw // 3, cy - ch), CAR, -1)
    for _ in range(rng.integers(*lay['people'])):
        t = rng.uniform(0.2, 0.9)
        cy = int(horizon + (h - horizon) * t)
        side = 1 if rng.random() < 0.5 else -1
        cx = int(vx + side * (road_half + (sw_half - road_half) * rng.uniform(0.2, 0.8)) * t)
        ph = int(h * 0.3 * t * lay['person_scale']) + 4
        cv2.ellipse(lab, (cx, cy - ph // 2), (max(2, ph // 6), ph // 2), 0, 0, 360, PERSON, -1)
    # ids without a trainId: a static object, an unlabeled border, the ego vehicle bonnet
    if rng.random() < 0.5:
        sx = int(rng.uniform(0, w - 10))
        lab[horizon:horizon + int(h * 0.05), sx:sx + int(w * 0.04)] = STATIC
    lab[:, :2] = UNLABELED
    lab[h - max(2, h // 40):, :] = EGO
    return lab


def render(lab, domain, rng, shift='toy'):
    """Render a BGR uint8 image of a label map: ``domain='source'`` in the source's look, else in the target look of
    the shift family ``shift`` (:data:`SHIFTS`)."""
    h, w = lab.shape
    look = dict(palette='source', shading='vertical', noise=3.0) if domain == 'source' else SHIFTS[shift]
    img = np.zeros((h, w, 3), np.float32)
    for cid, colour in PALETTE[look['palette']].items():
        jitter = rng.normal(0, 8, 3)
        img[lab == cid] = np.asarray(colour, np.float32) + jitter
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    if look.get('texture'):  # facade windows, leaf texture, road grain
        windows = ((np.floor(xx / 6) % 2 == 0) & (np.floor(yy / 8) % 2 == 0))
        img[(lab == BUILDING) & windows] *= 0.6
        leaves = cv2.GaussianBlur(rng.normal(0, 1, (h, w)).astype(np.float32), (0, 0), 1.5)
        img[lab == VEGETATION] += 40 * leaves[lab == VEGETATION][:, None]
        road_tex = rng.normal(0, 12, (h, w)).astype(np.float32)
        img[lab == ROAD] += road_tex[lab == ROAD][:, None]
    if look.get('stripes'):  # striped sidewalks and terrain, panelled cars
        img[(lab == SIDEWALK) & (np.floor((xx + yy) / 5) % 2 == 0)] *= 0.7
        img[(lab == TERRAIN) & (np.floor(yy / 3) % 2 == 0)] *= 0.75
        img[(lab == CAR) & (np.floor(xx / 4) % 3 == 0)] *= 1.4
    if look['shading'] == 'vertical':  # smooth, rendered look: soft vertical shading
        img *= (1.05 - 0.15 * yy / h)[..., None]
    else:  # a strong side illumination
        direction = 1 if rng.random() < 0.5 else -1
        light = 0.65 + 0.5 * (xx / w if direction > 0 else 1 - xx / w)
        img *= light[..., None]
    if look.get('white_balance'):
        img *= np.asarray(look['white_balance'], np.float32)
    if look.get('blur'):
        img = cv2.GaussianBlur(img, (0, 0), look['blur'])
    if look.get('vignette'):
        r2 = ((xx - w / 2) / (w / 2)) ** 2 + ((yy - h / 2) / (h / 2)) ** 2
        img *= (1 - look['vignette'] * r2 / 2)[..., None]
    if look.get('contrast'):  # less contrast around the image's mean
        img = img.mean() + look['contrast'] * (img - img.mean())
    if look.get('haze'):  # a veil that thickens from the bottom (near) to the top (far) of the image
        veil = look['haze'] * np.clip(1.15 - yy / h, 0, 1) ** 1.5
        img = img * (1 - veil[..., None]) + veil[..., None] * np.asarray(FOG_COLOUR, np.float32)
    img += rng.normal(0, look['noise'], img.shape)
    if look.get('gamma'):
        img = 255 * (np.clip(img, 0, 255) / 255) ** look['gamma']
    return np.clip(img, 0, 255).astype(np.uint8)


def write_png(path, array):
    os.makedirs(osp.dirname(path), exist_ok=True)
    if not cv2.imwrite(path, array):
        raise OSError(f'could not write {path}')


def write_palette_png(path, ids):
    """Write label ids as a palette PNG coloured like Cityscapes, the format of the real GTA5 labels."""
    from cityscapesscripts.helpers.labels import labels
    palette = np.zeros((256, 3), np.uint8)
    for label in labels:
        if label.id >= 0:
            palette[label.id] = label.color
    img = Image.fromarray(ids, mode='P')
    img.putpalette(palette.flatten().tolist())
    os.makedirs(osp.dirname(path), exist_ok=True)
    img.save(path)


def make_source(out_dir, num, size, seed, num_size_mismatch):
    w, h = size
    root = osp.join(out_dir, 'gta5')
    for i in range(num):
        rng = np.random.default_rng([seed, 0, i])
        lab = draw_layout(rng, h, w)
        img = render(lab, 'source', rng)
        name = f'{i + 1:05d}.png'
        write_png(osp.join(root, 'images', name), img)
        if i < num_size_mismatch:
            # as in the real GTA5 data, a few labels do not have the size of their image
            lab = cv2.resize(lab, (w, h + 2), interpolation=cv2.INTER_NEAREST)
        write_palette_png(osp.join(root, 'labels', name), lab)


def make_target(out_dir, num_train, num_val, size, seed, shift='toy'):
    w, h = size
    layout = SHIFTS[shift].get('layout')
    root = osp.join(out_dir, 'cityscapes')
    for split, num in (('train', num_train), ('val', num_val)):
        cities = CITIES[split]
        for i in range(num):
            rng = np.random.default_rng([seed, 1 if split == 'train' else 2, i])
            lab = draw_layout(rng, h, w, layout)
            img = render(lab, 'target', rng, shift)
            city = cities[i % len(cities)]
            stem = f'{city}_000000_{i:06d}'
            write_png(osp.join(root, 'leftImg8bit', split, city, f'{stem}_leftImg8bit.png'), img)
            write_png(osp.join(root, 'gtFine', split, city, f'{stem}_gtFine_labelIds.png'), lab)


def make_toy_data(out_dir, seed=0, num_source=48, num_target_train=48, num_target_val=8, source_size=(320, 176),
                  target_size=(512, 256), num_size_mismatch=1, shift='toy'):
    """Write the toy source/target pair under ``out_dir`` (sizes are (width, height)); ``shift``: the target's
    shift family (:data:`SHIFTS`)."""
    if shift not in SHIFTS:
        raise ValueError(f'--shift: unknown shift family {shift!r}; known: {", ".join(SHIFTS)}')
    make_source(out_dir, num_source, source_size, seed, num_size_mismatch)
    make_target(out_dir, num_target_train, num_target_val, target_size, seed, shift)


def parse_args():
    parser = argparse.ArgumentParser(description='Write a small GTA5-style / Cityscapes-style toy data set')
    parser.add_argument('out_dir', help='output folder (gets gta5/ and cityscapes/)')
    parser.add_argument('--seed', type=int, default=0)
    parser.add_argument('--num-source', type=int, default=48)
    parser.add_argument('--num-target-train', type=int, default=48)
    parser.add_argument('--num-target-val', type=int, default=8)
    parser.add_argument('--source-size', type=int, nargs=2, default=(320, 176), metavar=('W', 'H'))
    parser.add_argument('--target-size', type=int, nargs=2, default=(512, 256), metavar=('W', 'H'))
    parser.add_argument('--shift', default='toy', choices=sorted(SHIFTS),
                        help='the target\'s shift family (the source is the same for all): toy (default, data/toy), '
                        'colour, sensor, texture or layout')
    parser.add_argument('--num-size-mismatch', type=int, default=1,
                        help='number of source labels written at a size different from their image')
    return parser.parse_args()


def main():
    args = parse_args()
    make_toy_data(args.out_dir, args.seed, args.num_source, args.num_target_train, args.num_target_val,
                  tuple(args.source_size), tuple(args.target_size), args.num_size_mismatch, args.shift)
    print(f'toy data ({args.shift} shift) written to {args.out_dir}: gta5/ ({args.num_source} images), cityscapes/ '
          f'({args.num_target_train} train, {args.num_target_val} val)')


if __name__ == '__main__':
    main()
