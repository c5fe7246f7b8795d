"""The concise console of Algorithm 1: what reaches the console and what only the log file; the progress line."""
import io
import logging
import subprocess
from types import SimpleNamespace

import pytest
from mmengine.logging import MessageHub, MMLogger, print_log
from test_bidirectional_loop import train_cmd, write_config

import bdl_mm  # noqa: F401
from bdl_mm.engine.hooks import StageProgressHook
from bdl_mm.engine.runner import CONSOLE, CONSOLE_ONLY, FILE_ONLY, make_console_concise
from bdl_mm.engine.runner.concise_runner import log_python_warning


def concise_logger(tmp_path, name):
    logger = make_console_concise(MMLogger.get_instance(name, log_file=str(tmp_path / 'run.log'), log_level='INFO'))
    make_console_concise(logger)  # idempotent
    console = next(h for h in logger.handlers if type(h) is logging.StreamHandler)
    assert len(console.filters) == 2  # mmengine's duplicate filter and one ConsoleFilter
    console.setStream(io.StringIO())
    return logger, console.stream


def third_party_call(statement, **names):
    """Run a statement as code of an installed package (as mmengine's optimizer constructor logs its warnings)."""
    exec(compile(statement, '/venv/lib/python3.11/site-packages/somepkg/mod.py', 'exec'), dict(names))


def test_console_gets_marked_lines_errors_and_own_warnings_only(tmp_path):
    logger, console = concise_logger(tmp_path, 'bdl15_console')
    logger.info('System environment: ...')
    logger.info('[BDL] stage 1/6 m0 done', extra=CONSOLE)
    logger.info('[BDL] m0 iter 50/400', extra=CONSOLE_ONLY)
    logger.warning('hidden: marked for the file', extra=FILE_ONLY)
    third_party_call("print_log('backbone.bn1.weight is skipped', logger='bdl15_console', level=30)",
                     print_log=print_log)
    third_party_call("logger.error('an error of a package')", logger=logger)
    logger.warning('stage k1/m0: 2 batches skipped')  # the project's own warning
    for handler in logger.handlers:
        handler.flush()
    shown = [line.split(' - ')[-1] for line in console.getvalue().splitlines()]
    assert shown == ['[BDL] stage 1/6 m0 done', '[BDL] m0 iter 50/400', 'an error of a package',
                     'stage k1/m0: 2 batches skipped']
    kept = [line.split(' - ')[-1] for line in (tmp_path / 'run.log').read_text().splitlines()]
    assert kept == ['System environment: ...', '[BDL] stage 1/6 m0 done', 'hidden: marked for the file',
                    'backbone.bn1.weight is skipped', 'an error of a package', 'stage k1/m0: 2 batches skipped']


def test_python_warnings_of_packages_go_to_the_log_file(tmp_path):
    logger, console = concise_logger(tmp_path, 'bdl15_warnings')
    log_python_warning(UserWarning('build_loss would be deprecated'), UserWarning,
                       '/venv/lib/python3.11/site-packages/mmseg/models/builder.py', 36)
    log_python_warning(UserWarning('a project warning'), UserWarning, '/work/bdl_mm/apis/x.py', 7)
    assert console.getvalue().count('\n') == 1 and 'x.py:7: UserWarning: a project warning' in console.getvalue()
    text = (tmp_path / 'run.log').read_text()
    assert 'builder.py:36: UserWarning: build_loss would be deprecated' in text and 'a project warning' in text


def test_progress_line_iteration_loss_lr_eta():
    hub = MessageHub.get_instance('bdl15_progress')
    for i, (ce, adv) in enumerate([(3.0, 0.5), (2.0, 0.5), (1.0, 0.5)]):
        hub.update_scalar('train/src.decode.loss_ce', ce)
        hub.update_scalar('train/tgt.loss_adv', adv)
        hub.update_scalar('train/dis.loss_src', 9.0)  # D_M's loss: not in M's loss
        hub.update_scalar('train/src.decode.acc_seg', 50.0)
        hub.update_scalar('train/segmentor.lr', 0.005 - i * 0.001)
        hub.update_scalar('train/discriminator.lr', 1e-4)
    hub.update_info('eta', 3725.4)
    runner = SimpleNamespace(message_hub=hub, log_processor=SimpleNamespace(window_size=10), iter=49, max_iters=400)
    line = StageProgressHook(stage='k1/m0').progress_line(runner)
    # loss: mean over the window of each term, summed: (3 + 2 + 1) / 3 + 0.5
    assert line == '[BDL] k1/m0 iter 50/400  loss 2.5000  lr 3.000e-03  eta 1:02:05'
    hub.update_scalar('train/loss', 7.0)  # a model that logs its total: shown as it is
    assert 'loss 7.0000' in StageProgressHook(stage='m0').progress_line(runner)


@pytest.fixture
def toy(toy_root):
    return toy_root


def test_verbose_restores_mmengine_console(toy, tmp_path):
    """tools/train.py --verbose: every runner's environment, config and Iter(train) lines on the console again."""
    config = write_config(tmp_path / 'cfg.py', toy, loop_options='use_translation=False, use_ssl=False,')
    proc = subprocess.run(train_cmd(config, tmp_path / 'work', '--verbose'), capture_output=True, text=True,
                          timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    lines = proc.stdout.splitlines()
    assert proc.stdout.count('System environment') == 3  # the outer runner, m0 and k1/m0
    assert sum('Iter(train) [' in line for line in lines) == 4  # 2 iterations x 2 stages, logger interval 1
    assert not any('[BDL] m0 iter' in line for line in lines)  # mmengine's lines instead of the concise ones
    assert sum('[BDL] stage 2/2 k1/m0 done in' in line for line in lines) == 1
    assert sum(line.startswith('| M_0(1) |') for line in lines) == 1  # the table, once
