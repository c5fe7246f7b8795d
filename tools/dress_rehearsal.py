"""Dress rehearsal: run an Algorithm-1 config end to end at the real sizes, on the CPU, before a GPU-week.

    python tools/dress_rehearsal.py configs/bdl_gta5.py [--work-dir work_dirs/rehearsal/bdl_gta5]
        [--scenes 4] [--val 2] [--iters 2] [--f-batch 1] [--threads 1]

1. Writes a few generated street scenes (``tools/make_toy_data.py``'s layouts and renderer) at the real
   resolutions, in the real on-disk layout of the config's datasets: GTA5 1914x1052 PNGs with palette id labels (one
   label a size off, as in GTA5), SYNTHIA-RAND-CITYSCAPES 1280x760 with 16-bit labels (class id in the first
   channel), Cityscapes 2048x1024 ``leftImg8bit`` / ``gtFine_labelIds``.
2. Converts them with the project's converters (``tools/dataset_converters/``), and writes M's initial weights in
   the layout the config's users download (the release's DeepLab initialisation with ``Scale.`` keys and a COCO
   classifier, the release's FCN8s file, MMSeg's ImageNet backbones), converted by the project's model converters
   where the config's documentation says so (``configs/README.md``).
3. Runs ``tools/train.py CONFIG`` on them, every stage of the plan, changing only the data roots and the counts:
   ``--iters`` iterations per M stage, one F epoch (``max(#source, #target)`` images) with F's batch per process
   ``--f-batch`` (default 1, one GPU's share of the release's batch of 4 on 4 GPUs: the batch of 4 in one process
   needs over 22 GiB at 452x452 with the perceptual loss, more than a 24 GiB machine holds beside the rest), and
   the generated val images.
4. Checks the run: every stage done, ``final_model.pth`` readable, S' and pseudo labels at the sizes the config
   asks for (and reports the size of B(S), the SSL stages' colour-transferred copy of S, where ledger row 21 writes
   it). Reports the wall time, the peak resident memory of the training process (``ru_maxrss``), and the disk each
   stage wrote: per S' image, per pseudo label, per checkpoint, per B(S) image. ``rehearsal.json`` in the work dir
   keeps it all.

Not a test (minutes to an hour per config on the CPU). Exit status 0 when the rehearsal passes.
"""
import argparse
import json
import os
import os.path as osp
import resource
import shutil
import subprocess
import sys
import time

try:
    import _bootstrap  # noqa: F401  (must come first: one-line error if the stack is missing)
    from make_toy_data import draw_layout, make_source, make_target, render, write_png
except ImportError:  # imported as a module (tests)
    from tools import _bootstrap  # noqa: F401
    from tools.make_toy_data import draw_layout, make_source, make_target, render, write_png
import numpy as np
import torch
from mmengine.config import Config
from PIL import Image

from bdl_mm.datasets.label_maps import SYNTHIA_ID_TO_TRAIN_ID, cityscapes_id_to_train_id

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
TOOLS = osp.join(ROOT, 'tools')
# the real resolutions (W, H) of the released data sets
REAL_SIZE = dict(GTA5Dataset=(1914, 1052), SynthiaDataset=(1280, 760), CityscapesDataset=(2048, 1024))
SOURCE_FOLDER = dict(GTA5Dataset='gta5', SynthiaDataset='synthia')
COCO_CLASSES = 21  # the release's DeepLab initialisation carries a classifier of another task (dropped for 19)


def parse_args(argv=None):
    p = argparse.ArgumentParser(description='Run an Algorithm-1 config end to end at the real sizes on generated '
                                'scenes (CPU), then check and measure the run')
    p.add_argument('config')
    p.add_argument('--work-dir', help='default: work_dirs/rehearsal/<config name>')
    p.add_argument('--scenes', type=int, default=4, help='source and target train images (default 4)')
    p.add_argument('--val', type=int, default=2, help='target val images (default 2)')
    p.add_argument('--iters', type=int, default=2, help='iterations per M stage (default 2)')
    p.add_argument('--f-batch', type=int, default=1,
                   help="F's batch in this one process (default 1: one GPU's share of the release's batch 4 on 4 GPUs; "
                   "4 on one process needs more than 22 GiB on the CPU)")
    p.add_argument('--threads', type=int, default=1, help='OMP_NUM_THREADS of the run (default 1)')
    p.add_argument('--keep-data', action='store_true',
                   help='reuse the generated data and weights of an earlier try, and continue its run (--resume with '
                   '--force-resume: the completed stages are kept); without it the run starts afresh')
    args = p.parse_args(argv)
    if min(args.scenes, args.val, args.iters) < 1:
        p.error('--scenes, --val and --iters must be >= 1')
    return args


def run(cmd, log, env=None):
    """Run a command, its output appended to ``log``; one line naming the command and the log on failure."""
    with open(log, 'a') as f:
        f.write('$ ' + ' '.join(cmd) + '\n')
        f.flush()
        rc = subprocess.call(cmd, stdout=f, stderr=subprocess.STDOUT, env=env, cwd=ROOT)
    if rc != 0:
        raise SystemExit(f'error: {" ".join(cmd[1:3])} ... exited with {rc}; see {log}')


# ------------------------------------------------------------------ data at the real sizes, real layouts
def make_synthia(out_dir, num, size, seed):
    """SYNTHIA-RAND-CITYSCAPES: RGB/XXXXXXX.png and GT/LABELS/XXXXXXX.png (uint16, class id in R, instance in G)."""
    to_train = cityscapes_id_to_train_id()
    train_to_synthia = {t: s for s, t in SYNTHIA_ID_TO_TRAIN_ID.items()}
    lut = np.zeros(256, np.uint16)  # Cityscapes id -> SYNTHIA id; 0 (void) for ids without a SYNTHIA class
    for cid, tid in to_train.items():
        lut[cid] = train_to_synthia.get(tid, 0)
    w, h = size
    for i in range(num):
        rng = np.random.default_rng([seed, 0, i])
        lab = draw_layout(rng, h, w)
        name = f'{i:07d}.png'
        write_png(osp.join(out_dir, 'synthia', 'RGB', name), render(lab, 'source', rng))
        cls = lut[lab]
        inst = (rng.integers(0, 2**16, size=cls.shape) * (cls > 0)).astype(np.uint16)
        write_png(osp.join(out_dir, 'synthia', 'GT', 'LABELS', name), np.stack([np.zeros_like(cls), inst, cls], -1))


def make_data(cfg, data_dir, args, log):
    source_type = cfg.train_dataloader.dataset.source.type
    if source_type not in SOURCE_FOLDER:
        raise SystemExit(f'error: the dress rehearsal writes GTA5 or SYNTHIA sources, not {source_type}')
    size = REAL_SIZE[source_type]
    if source_type == 'GTA5Dataset':
        make_source(data_dir, args.scenes, size, seed=0, num_size_mismatch=1)
    else:
        make_synthia(data_dir, args.scenes, size, seed=0)
    make_target(data_dir, args.scenes, args.val, REAL_SIZE['CityscapesDataset'], seed=0)
    name = SOURCE_FOLDER[source_type]
    py = sys.executable
    run([py, osp.join(TOOLS, 'dataset_converters', f'{name}.py'), osp.join(data_dir, name), '--no-progress'], log)
    run([py, osp.join(TOOLS, 'dataset_converters', 'cityscapes.py'), osp.join(data_dir, 'cityscapes'),
         '--no-progress'], log)
    return osp.join(data_dir, name), osp.join(data_dir, 'cityscapes')


# ------------------------------------------------------------------ initial weights in the users' layouts
def build_segmentor(cfg):
    from mmengine.registry import init_default_scope
    from mmseg.registry import MODELS
    init_default_scope('mmseg')
    seg = cfg.model.segmentor.copy()
    seg.pop('init_cfg', None)
    return MODELS.build(seg)  # PyTorch's default init: the values do not matter, the layout does


def release_deeplab_init(state_dict):
    """The release's DeepLab-ResNet101 initialisation: ``Scale.`` keys, no num_batches_tracked (old PyTorch), and
    a classifier of another task (``COCO_CLASSES`` outputs)."""
    out = {}
    for key, value in state_dict.items():
        if key.endswith('num_batches_tracked'):
            continue
        if key.startswith('backbone.'):
            out['Scale.' + key[len('backbone.'):]] = value
        elif key.startswith('decode_head.conv2d_list.'):
            value = value[:1].expand(COCO_CLASSES, *value.shape[1:]).clone() if value.ndim else value
            out['Scale.layer5.' + key[len('decode_head.'):]] = value
    return out


def release_fcn8s(state_dict):
    """The release's VGG16-FCN8s file: the module names without mmseg's backbone./decode_head. prefixes."""
    return {k.split('.', 1)[1]: v for k, v in state_dict.items() if k.startswith(('backbone.', 'decode_head.'))}


def make_weights(cfg, weights_dir, log):
    """Write the config's initial weights as its users get them, convert them as its documentation says, and
    return the cfg-options that load them."""
    os.makedirs(weights_dir, exist_ok=True)
    model = build_segmentor(cfg)
    sd = model.state_dict()
    head = cfg.model.segmentor.decode_head.type
    py = sys.executable
    if head == 'DeepLabV2Head':  # configs/README.md: deeplab_resnet101_init.py, keys prefixed with segmentor.
        src, dst = osp.join(weights_dir, 'DeepLab_resnet_pretrained_init.pth'), osp.join(weights_dir, 'init.pth')
        torch.save(release_deeplab_init(sd), src)
        run([py, osp.join(TOOLS, 'model_converters', 'deeplab_resnet101_init.py'), src, dst, '--drop-classifier',
             '--prefix', 'segmentor.'], log)
        return [f'load_from={dst}']
    if head == 'FCN8sHead':  # the release's source-specific FCN8s file, bdl_release.py --model fcn8s
        src, dst = osp.join(weights_dir, 'fcn8s_init_release.pth'), osp.join(weights_dir, 'init.pth')
        torch.save(release_fcn8s(sd), src)
        run([py, osp.join(TOOLS, 'model_converters', 'bdl_release.py'), src, dst, '--model', 'fcn8s',
             '--prefix', 'segmentor.'], log)
        return [f'load_from={dst}']
    # MMSeg's ImageNet backbones (resnet101_v1c.pth, mit_b5.pth): the backbone's own keys, loaded by its init_cfg
    dst = osp.join(weights_dir, 'backbone_imagenet.pth')
    backbone = {k[len('backbone.'):]: v for k, v in sd.items() if k.startswith('backbone.')}
    torch.save(dict(state_dict=backbone), dst)
    return ['model.segmentor.backbone.init_cfg.type=Pretrained', f'model.segmentor.backbone.init_cfg.checkpoint={dst}']


# ------------------------------------------------------------------ the run: data roots and counts only
def count_options(cfg, source_root, target_root, iters, f_batch):
    opts = [f'train_dataloader.dataset.source.data_root={source_root}',
            f'train_dataloader.dataset.target.data_root={target_root}',
            f'val_dataloader.dataset.data_root={target_root}', f'test_dataloader.dataset.data_root={target_root}']
    for stage in ('source_only', 'adaptation', 'ssl_adaptation'):
        opts += [f'train_cfg.stages.{stage}.train_cfg.max_iters={iters}',
                 f'train_cfg.stages.{stage}.train_cfg.val_interval={iters}']
    if not cfg.train_cfg.stages.translation.get('type'):  # a trained F (not a baseline): one epoch
        opts += ['train_cfg.stages.translation.cfg_options.train_cfg.max_epochs=1',
                 f'train_cfg.stages.translation.cfg_options.global_batch_size={f_batch}']
    return opts


def disk_report(work_dir):
    """Bytes written per stage folder: checkpoints, S' images, pseudo labels (mean per file)."""
    report = {}
    for dirpath, _, files in os.walk(work_dir):
        rel = osp.relpath(dirpath, work_dir)
        stage = '/'.join(rel.split(os.sep)[:2]) if rel.startswith('k') else rel.split(os.sep)[0]
        for f in files:
            kind = ('checkpoint' if f.endswith('.pth') else
                    'cache' if '_cache' in rel.split(os.sep) else
                    'image' if f.endswith('.png') and f not in PLOTS and ('translate' in rel or 'ssl' in rel) else None)
            if kind is None:
                continue
            entry = report.setdefault(stage, {}).setdefault(kind, dict(files=0, bytes=0))
            entry['files'] += 1
            entry['bytes'] += osp.getsize(osp.join(dirpath, f))
    return report


PLOTS = ('threshold_study.png', 'samples.png')  # a stage's figures, not its outputs


def image_sizes(folder, suffix='.png'):
    """The sizes of a stage's output images (S', pseudo labels), leaving out its plots and its cache."""
    sizes = set()
    for dirpath, _, files in os.walk(folder):
        if '_cache' in dirpath.split(os.sep):
            continue
        for f in files:
            if f.endswith(suffix) and f not in PLOTS:
                with Image.open(osp.join(dirpath, f)) as im:
                    sizes.add(im.size)
    return sorted(sizes)


def check_run(work_dir):
    state = json.load(open(osp.join(work_dir, 'bdl_state.json')))
    plan = list(state.get('plan') or [])  # the stage names, in plan order (bdl_mm/engine/run_state.py)
    done = {name: rec for name, rec in (state.get('stages') or {}).items() if rec.get('status') == 'done'}
    if not plan:
        raise SystemExit(f'error: {osp.join(work_dir, "bdl_state.json")} holds no plan')
    missing = [name for name in plan if name not in done]
    if missing:
        raise SystemExit(f'error: stages not completed: {", ".join(missing)}')
    final = osp.join(work_dir, 'final_model.pth')
    ckpt = torch.load(final, map_location='cpu', weights_only=False)
    if not ckpt.get('state_dict'):
        raise SystemExit(f'error: {final} holds no state_dict')
    stages = {name: round(done[name].get('seconds') or 0, 1) for name in plan}
    found = {}
    for name in plan:
        folder = osp.join(work_dir, name)
        if name.endswith('translate') or 'ssl' in name:
            found[name] = image_sizes(folder)
    copy = osp.join(work_dir, 'ssl_baseline_source')  # ledger row 21 (the robust recipe's R6): B(S), once per run
    if osp.isdir(copy):
        found['ssl_baseline_source'] = image_sizes(copy)
    return stages, found


def main(argv=None):
    args = parse_args(argv)
    name = osp.splitext(osp.basename(args.config))[0]
    work = osp.abspath(args.work_dir or osp.join('work_dirs', 'rehearsal', name))
    data_dir, weights_dir, run_dir = osp.join(work, 'data'), osp.join(work, 'weights'), osp.join(work, 'run')
    log = osp.join(work, 'rehearsal.log')
    os.makedirs(work, exist_ok=True)
    cfg = Config.fromfile(args.config)
    t0 = time.time()
    marker = osp.join(work, '.data_ready')
    if args.keep_data and osp.exists(marker):
        roots = json.load(open(marker))
    else:
        source_root, target_root = make_data(cfg, data_dir, args, log)
        roots = dict(source=source_root, target=target_root, load=make_weights(cfg, weights_dir, log))
        json.dump(roots, open(marker, 'w'))
    t_data = time.time() - t0
    print(f'[rehearsal] {name}: data and weights ready in {t_data:.0f} s ({work})', flush=True)
    env = dict(os.environ, OMP_NUM_THREADS=str(args.threads), MKL_NUM_THREADS=str(args.threads))
    if not args.keep_data and osp.isdir(run_dir):
        shutil.rmtree(run_dir)
    cmd = [sys.executable, osp.join(TOOLS, 'train.py'), args.config, '--work-dir', run_dir, '--force-resume',
           '--cfg-options', *count_options(cfg, roots['source'], roots['target'], args.iters, args.f_batch),
           *roots['load']]
    t1 = time.time()
    run(cmd, log, env)
    seconds = time.time() - t1
    peak_rss = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 2**20  # KiB -> GiB (Linux)
    stages, sizes = check_run(run_dir)
    report = dict(config=args.config, seconds=round(seconds, 1), data_seconds=round(t_data, 1),
                  peak_rss_gib=round(peak_rss, 2), threads=args.threads, iters=args.iters, scenes=args.scenes,
                  f_batch=args.f_batch,
                  val=args.val, stages=stages, output_sizes={k: [list(s) for s in v] for k, v in sizes.items()},
                  disk=disk_report(run_dir))
    with open(osp.join(work, 'rehearsal.json'), 'w') as f:
        json.dump(report, f, indent=1)
    print(f'[rehearsal] {name}: passed, {len(stages)} stages in {seconds / 60:.1f} min, peak RSS {peak_rss:.1f} GiB')
    for stage, s in stages.items():
        extra = f'  outputs {sizes[stage]}' if stage in sizes else ''
        print(f'  {stage:16s} {s:8.1f} s{extra}')
    for copy in sorted(set(sizes) - set(stages)):  # a run's folders outside the stages (B(S) of row 21)
        files = report['disk'].get(copy, {}).get('image', {})
        per = files.get('bytes', 0) / max(files.get('files', 0), 1) / 2**20
        print(f'  {copy:16s} outputs {sizes[copy]}, {files.get("files", 0)} images, {per:.2f} MiB each')


if __name__ == '__main__':
    main()
