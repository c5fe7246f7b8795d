"""Checkpoints of M alone out of a BDLSegmentor, written atomically."""
import os

import torch
import torch.nn as nn

from bdl_mm.engine.checkpoint import export_segmentor_checkpoint, save_model_checkpoint


class Wrapper(nn.Module):
    def __init__(self):
        super().__init__()
        self.segmentor = nn.Conv2d(3, 2, 1)
        self.discriminator = nn.Conv2d(2, 1, 1)


def test_segmentor_checkpoint_holds_m_alone(tmp_path):
    model = Wrapper()
    export_segmentor_checkpoint(model, str(tmp_path / 'seg.pth'))
    save_model_checkpoint(model, str(tmp_path / 'all.pth'), meta=dict(stage='M_0(1)'))
    seg = torch.load(tmp_path / 'seg.pth', weights_only=True)
    assert set(seg['state_dict']) == {'weight', 'bias'}
    assert torch.equal(seg['state_dict']['weight'], model.segmentor.weight)
    full = torch.load(tmp_path / 'all.pth', weights_only=True)
    assert set(full['state_dict']) == {'segmentor.weight', 'segmentor.bias', 'discriminator.weight',
                                       'discriminator.bias'}
    assert full['meta']['stage'] == 'M_0(1)'
    assert sorted(os.listdir(tmp_path)) == ['all.pth', 'seg.pth']
