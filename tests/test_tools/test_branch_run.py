"""tools/branch_run.py on a run laid out by hand (no training): which stages a branch keeps, where its paths point,
and the errors. The end-to-end branch of a trained run, resumed with a switch, is in
tests/test_engine/test_translation_baselines_loop.py."""
import json
import os
import os.path as osp

import pytest
from toy_helpers import load_tool

from bdl_mm.engine.work_dir_lock import WorkDirInUseError, WorkDirLock

branch_run = load_tool('branch_run.py')

PLAN = ['m0', 'k1/translation', 'k1/translate', 'k1/m0', 'k1/ssl1', 'k1/m1', 'k2/translation', 'k2/m0',
        'ref/oracle', 'ref/fda/k1/translate', 'ref/fda/k1/m0', 'ref/fda/k1/ssl1', 'ref/fda/k1/m1']


def fake_run(root, unfinished=('k2/m0', )):
    """A work dir with every stage of PLAN done (but ``unfinished``), each with a checkpoint inside its folder."""
    run = str(root)
    stages = {}
    for name in PLAN:
        os.makedirs(osp.join(run, name), exist_ok=True)
        with open(osp.join(run, name, 'final_model.pth'), 'w') as f:
            f.write(name)
        stages[name] = dict(status='running' if name in unfinished else 'done',
                            checkpoint=osp.join(run, name, 'final_model.pth'),
                            translated_dir=osp.join(run, 'k1/translate'), elsewhere='/data/toy/gta5')
    state = dict(plan=PLAN, stages=stages, running='k2/m0', final_model=dict(path=osp.join(run, 'final_model.pth')))
    for name, text in (('bdl_state.json', json.dumps(state)), ('final_model.pth', 'run'), ('results.md', '|'),
                       ('bdl_config.json', '{}')):
        with open(osp.join(run, name), 'w') as f:
            f.write(text)
    return run


def test_branch_keeps_the_stages_before_each_point_and_moves_their_paths(tmp_path):
    src, dst = fake_run(tmp_path / 'src'), str(tmp_path / 'dst')
    branch_run.main([src, dst, '--from', 'k1/ssl1', 'ref/fda/k1/ssl1'])
    with open(osp.join(dst, 'bdl_state.json')) as f:
        state = json.load(f)
    kept = ['m0', 'k1/translation', 'k1/translate', 'k1/m0', 'ref/oracle', 'ref/fda/k1/translate', 'ref/fda/k1/m0']
    assert list(state['stages']) == kept  # the own track from k1/ssl1 on (k2 included), fda's from its ssl1 on
    assert state['plan'] == PLAN and state['final_model'] is None and state['running'] is None
    for name in PLAN:  # the folders follow the state; each kept checkpoint is the source's file, in the branch
        assert osp.isdir(osp.join(dst, name)) == (name in kept)
    assert state['stages']['k1/m0']['checkpoint'] == osp.join(dst, 'k1/m0', 'final_model.pth')
    assert open(state['stages']['k1/m0']['checkpoint']).read() == 'k1/m0'
    assert state['stages']['k1/m0']['translated_dir'] == osp.join(dst, 'k1/translate')
    assert state['stages']['k1/m0']['elsewhere'] == '/data/toy/gta5'  # paths outside the run stay
    # the run's own final model and results are not copied, its fingerprint is; the source is untouched
    assert sorted(n for n in os.listdir(dst) if osp.isfile(osp.join(dst, n))) == ['bdl_config.json',
                                                                                   'bdl_state.json']
    assert osp.isfile(osp.join(src, 'final_model.pth')) and osp.isdir(osp.join(src, 'k1/ssl1'))


def test_branch_link_shares_checkpoints_and_images_and_copies_the_rest(tmp_path, monkeypatch):
    """--link: a kept stage's checkpoint and image are the source's files (one inode, two names); its JSON is a
    copy; a file the branch writes again (temporary file, then rename, as the project writes them) leaves the
    source's as it was; the stages left out are never copied."""
    src, dst = fake_run(tmp_path / 'src'), str(tmp_path / 'dst')
    with open(osp.join(src, 'k1/translate', '00001.png'), 'wb') as f:
        f.write(b'png')
    with open(osp.join(src, 'k1/m0', 'diagnostics.json'), 'w') as f:
        f.write('{}')
    copied, real = [], branch_run.copy_or_link  # every file the branch copies or links, relative to the source
    monkeypatch.setattr(branch_run, 'copy_or_link',
                        lambda link: lambda a, b: copied.append(osp.relpath(a, src)) or real(link)(a, b))
    branch_run.main([src, dst, '--from', 'k1/ssl1', '--link'])
    for rel in ('k1/m0/final_model.pth', 'k1/translate/00001.png'):
        a, b = os.stat(osp.join(src, rel)), os.stat(osp.join(dst, rel))
        assert (a.st_ino, a.st_nlink) == (b.st_ino, 2)
    json_src, json_dst = (os.stat(osp.join(root, 'k1/m0/diagnostics.json')) for root in (src, dst))
    assert json_src.st_ino != json_dst.st_ino and json_dst.st_nlink == 1
    assert 'k1/m0/final_model.pth' in copied  # the recorder sees the kept files ...
    assert not any(c.startswith(('k1/ssl1', 'k1/m1', 'k2/')) for c in copied)  # ... and none of the stages left out
    with open(osp.join(dst, 'k1/m0', 'final_model.pth.tmp'), 'w') as f:
        f.write('new')
    os.replace(osp.join(dst, 'k1/m0', 'final_model.pth.tmp'), osp.join(dst, 'k1/m0', 'final_model.pth'))
    assert open(osp.join(src, 'k1/m0', 'final_model.pth')).read() == 'k1/m0'
    plain = str(tmp_path / 'plain')  # without --link: copies
    branch_run.main([src, plain, '--from', 'k1/ssl1'])
    assert os.stat(osp.join(plain, 'k1/translate/00001.png')).st_nlink == 1


def test_branch_before_m0_keeps_nothing_and_unfinished_stages_are_left_out(tmp_path):
    src = fake_run(tmp_path / 'src', unfinished=('k1/m0', ))
    assert branch_run.branch(src, str(tmp_path / 'none'), ['m0'])['stages'] == {}
    state = branch_run.branch(src, str(tmp_path / 'dst'), ['k2/translation'])
    assert 'k1/m0' not in state['stages'] and not osp.exists(osp.join(tmp_path, 'dst', 'k1/m0'))
    assert 'ref/fda/k1/m1' in state['stages']  # another track: kept


def test_branch_errors(tmp_path):
    src = fake_run(tmp_path / 'src')
    with pytest.raises(SystemExit, match=r'^error: --from k3/m0: not a stage of the run; its stages: m0, '):
        branch_run.main([src, str(tmp_path / 'a'), '--from', 'k3/m0'])
    os.makedirs(tmp_path / 'exists')
    with pytest.raises(SystemExit, match='exists: a branch goes into a new work dir'):
        branch_run.main([src, str(tmp_path / 'exists'), '--from', 'k1/m1'])
    with pytest.raises(SystemExit, match='holds no Algorithm-1 run'):
        branch_run.main([str(tmp_path / 'exists'), str(tmp_path / 'b'), '--from', 'k1/m1'])
    lock = WorkDirLock(src).acquire()  # a running source is refused
    try:
        with pytest.raises(WorkDirInUseError):
            branch_run.branch(src, str(tmp_path / 'c'), ['k1/m1'])
    finally:
        lock.release()
    assert not osp.exists(tmp_path / 'a') and not osp.exists(tmp_path / 'c')
