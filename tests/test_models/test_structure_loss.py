# Copyright (c) bdl_mm contributors.
"""The structure loss of F (an F that keeps its input's edges): hand-checked edges, its invariances, its switch."""
import copy

import cv2
import numpy as np
import pytest
import torch
from mmengine.logging import MessageHub
from test_perceptual_cycle_gan import _mmagic_cyclegan, build_model, make_batch, optim

from bdl_mm.evaluation.stage_diagnostics import _edge_map
from bdl_mm.models.translators.structure_loss import edge_correlation_loss, edge_magnitude, parse_structure_loss


@pytest.fixture(autouse=True)
def _iter_zero():
    MessageHub.get_current_instance().update_info('iter', 0)


def horizon(size=32, row=12):
    """A sky/ground image (1, 3, size, size): one horizontal edge at ``row``."""
    img = torch.full((1, 3, size, size), 0.8)
    img[..., row:, :] = -0.4
    return img


def test_edge_magnitude_is_the_diagnostics_sobel():
    rng = np.random.RandomState(0)
    img = rng.randint(0, 256, (20, 24, 3)).astype(np.uint8)
    ours = edge_magnitude(torch.from_numpy(img.astype(np.float64)).permute(2, 0, 1)[None], 1)[0, 0].numpy()
    grey = cv2.cvtColor(img, cv2.COLOR_BGR2GRAY).astype(np.float64)
    # the diagnostic's map on the channel mean (cv2's grey weights the channels): the same kernel, the borders aside
    ref = _edge_map(np.repeat(grey[..., None], 3, 2).astype(np.uint8))
    ours_grey = edge_magnitude(torch.from_numpy(grey)[None, None], 1)[0, 0].numpy()
    assert np.allclose(ours_grey[1:-1, 1:-1], ref[1:-1, 1:-1], atol=2.)  # ref's grey is rounded to uint8
    assert ours.shape == (20, 24)
    # a vertical step of height 1: |Sobel x| = 1 + 2 + 1 = 4 on both columns beside it
    step = torch.zeros(1, 1, 5, 6)
    step[..., 3:] = 1.
    assert edge_magnitude(step)[0, 0, 2].tolist() == pytest.approx([0, 0, 4, 4, 0, 0], abs=1e-5)


def test_loss_is_blind_to_contrast_not_to_position():
    real = horizon()
    assert float(edge_correlation_loss(real, real)) == pytest.approx(0., abs=1e-6)
    assert float(edge_correlation_loss(0.3 * real - 0.2, real)) == pytest.approx(0., abs=1e-6)  # fog-like contrast
    # F moved the horizon: two edge rows (64 of 1024 pixels, p = 1/16) in each image, disjoint, so the centred
    # correlation is -p / (1 - p) = -1/15 by hand, and the loss 16/15
    moved = horizon(row=20)
    assert float(edge_correlation_loss(moved, real)) == pytest.approx(16 / 15, abs=1e-5)


def test_pooling_ignores_a_fine_texture_but_not_the_horizon():
    real = horizon()
    textured = real.clone()
    textured[..., 14:, (np.arange(32) % 4) < 2] += 0.4  # stripes of period 4 below the horizon (a target texture)
    assert float(edge_correlation_loss(textured, real, scale=1)) > 0.2
    assert float(edge_correlation_loss(textured, real, scale=4)) < 0.01  # 4 px stripes average out
    assert float(edge_correlation_loss(horizon(row=21), real, scale=4)) > 0.5


def test_loss_moves_and_only_the_fake_gets_a_gradient():
    real = horizon()
    fake = torch.randn(1, 3, 32, 32, generator=torch.Generator().manual_seed(0)).requires_grad_()
    opt = torch.optim.Adam([fake], lr=0.05)
    first = float(edge_correlation_loss(fake, real, 2))
    for _ in range(60):
        opt.zero_grad()
        loss = edge_correlation_loss(fake, real, 2)
        loss.backward()
        opt.step()
    assert first > 0.8 and float(loss) < 0.5 * first


def test_parse_structure_loss():
    assert parse_structure_loss(None) == (0., 1)
    assert parse_structure_loss(dict(weight=2)) == (2., 4)
    for bad in (dict(scale=4), dict(weight=1, scale=0), dict(weight=-1), dict(weight=1, scale=2.5),
                dict(weight=1, sigma=3)):
        with pytest.raises(ValueError, match='structure_loss'):
            parse_structure_loss(bad)


def test_cycle_gan_switch_adds_the_terms_and_off_changes_nothing():
    data = make_batch(n=2)
    ref = build_model()
    ref.load_state_dict(_mmagic_cyclegan().state_dict())
    log_ref = ref.train_step(copy.deepcopy(data), optim(ref))
    ours = build_model(structure_loss=None)
    ours.load_state_dict(_mmagic_cyclegan().state_dict())
    log_off = ours.train_step(copy.deepcopy(data), optim(ours))
    assert {k: float(v) for k, v in log_off.items()} == {k: float(v) for k, v in log_ref.items()}
    on = build_model(structure_loss=dict(weight=3., scale=2))
    on.load_state_dict(_mmagic_cyclegan().state_dict())
    log_on = on.train_step(copy.deepcopy(data), optim(on))
    struct = [float(log_on[f'loss_struct_{d}']) for d in ('source', 'target')]
    assert all(0 < s <= 6. for s in struct)  # 3 x (1 - corr), corr of random images' edges > -1
    assert all(float(log_on[k]) == float(log_ref[k]) for k in log_ref if k != 'loss')  # same first forward
    assert float(log_on['loss']) == pytest.approx(float(log_ref['loss']) + sum(struct), rel=1e-5)
    with pytest.raises(ValueError, match='structure_loss'):
        build_model(structure_loss=dict(scale=2))
