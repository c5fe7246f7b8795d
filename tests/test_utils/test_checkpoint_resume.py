"""torch >= 2.6 loads with weights_only=True: mmengine's own checkpoints must still resume after `import bdl_mm`."""
import pickle
import subprocess
import sys

import torch
import torch.nn as nn

SCRIPT = r'''
import sys, torch, torch.nn as nn
from mmengine.model import BaseModel
from mmengine.runner import Runner
if sys.argv[2] == 'bdl':
    import bdl_mm  # noqa: F401
class Tiny(BaseModel):
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(2, 1)
    def forward(self, inputs, data_samples=None, mode='loss'):
        return dict(loss=self.fc(torch.stack(inputs)).pow(2).mean())
def runner(max_iters, resume):
    return Runner(model=Tiny(), work_dir=sys.argv[1], train_cfg=dict(by_epoch=False, max_iters=max_iters),
                  train_dataloader=dict(dataset=[dict(inputs=torch.ones(2))] * 8, batch_size=2,
                                        sampler=dict(type='DefaultSampler', shuffle=False),
                                        collate_fn=dict(type='pseudo_collate')),
                  optim_wrapper=dict(optimizer=dict(type='SGD', lr=0.1, momentum=0.9)),
                  default_hooks=dict(checkpoint=dict(type='CheckpointHook', interval=2, by_epoch=False)),
                  resume=resume)
runner(2, False).train()
r = runner(4, True)
r.train()
print('ITER', r.iter)
'''


def _run(tmp_path, mode):
    return subprocess.run([sys.executable, '-c', SCRIPT, str(tmp_path), mode], capture_output=True, text=True)


def test_resume_fails_without_plugin_and_works_with_it(tmp_path):
    plain = _run(tmp_path / 'plain', 'plain')
    assert plain.returncode != 0 and 'Weights only load failed' in plain.stderr
    proc = _run(tmp_path / 'bdl', 'bdl')
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert 'ITER 4' in proc.stdout  # resumed at iteration 2 and trained to 4


def test_arbitrary_pickles_stay_refused(tmp_path):
    import bdl_mm  # noqa: F401  (allow-lists mmengine's globals)

    class Evil:
        def __reduce__(self):
            return (print, ('pwned',))

    path = tmp_path / 'evil.pth'
    with open(path, 'wb') as f:
        torch.save({'x': Evil()}, f)
    try:
        torch.load(path, weights_only=True)
    except pickle.UnpicklingError as e:
        assert 'print' in str(e) or 'Unsupported global' in str(e)
    else:
        raise AssertionError('weights_only load accepted an arbitrary callable')
    # plain tensors still load
    torch.save(nn.Linear(2, 2).state_dict(), tmp_path / 'ok.pth')
    assert set(torch.load(tmp_path / 'ok.pth', weights_only=True)) == {'weight', 'bias'}
