"""``python tests/kill_and_train.py TOOLS_TRAIN_ARGS...``: ``tools/train.py``, killed by SIGKILL at a chosen point;
``python tests/kill_and_train.py --serve``: the same for each job read from stdin, each in a forked child of a process
that imported the stack once (see :func:`serve`).

Used by ``tests/test_engine/test_kill_resume.py`` (docs/reliability.md, section 4). The point is given by the
environment variable ``BDL_KILL`` (unset: a plain run):

- ``iter:<stage>:<n>``: after training iteration n (1-based, counted over the whole stage, as mmengine's ``iter``)
  of stage ``<stage>`` (its folder under the work dir, e.g. ``k1/translation``), once its ``after_train_iter`` hooks
  have run (a checkpoint due at that iteration is written; an epoch's checkpoint comes after its last iteration);
- ``file:<stage>:<n>``: after this process's n-th atomic write (``os.replace``) into the folder of ``<stage>``
  (translated images; pseudo labelling's settings, prediction cache, histograms and labels);
- ``record:<stage>``: once ``<stage>`` is done, just before ``bdl_state.json`` records it (its outputs are written).

Nothing of this is in the package: the wrapper patches mmengine's ``Runner.call_hook``, ``os.replace`` and the
run state's ``RunState.save`` (``bdl_state.json``) in this process only, then runs ``tools/train.py``'s ``main``.
"""
import os
import os.path as osp
import runpy
import signal
import sys
import time

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
TRAIN = osp.join(ROOT, 'tools', 'train.py')
ANSWER = 'BDL_JOB_DONE '  # the line that answers a job (--serve)


def _die():
    sys.stdout.flush()
    sys.stderr.flush()
    os.kill(os.getpid(), signal.SIGKILL)


def _work_dir() -> str:
    argv = sys.argv
    return osp.abspath(argv[argv.index('--work-dir') + 1])


def install(spec: str) -> None:
    kind, _, rest = spec.partition(':')
    if kind == 'iter':
        stage, n = rest.rsplit(':', 1)
        from mmengine.runner import Runner
        original = Runner.call_hook
        stage_dir = osp.join(_work_dir(), stage)

        def call_hook(self, fn_name, **kwargs):
            original(self, fn_name, **kwargs)
            # after_train_iter runs before the loop counts the iteration: runner.iter is n - 1 then
            if (fn_name == 'after_train_iter' and osp.abspath(self.work_dir) == stage_dir
                    and self.iter + 1 == int(n)):
                _die()

        Runner.call_hook = call_hook
    elif kind == 'file':
        stage, n = rest.rsplit(':', 1)
        original_replace = os.replace
        stage_dir = osp.join(_work_dir(), stage) + os.sep
        count = [0]

        def replace(src, dst, *args, **kwargs):
            original_replace(src, dst, *args, **kwargs)
            if osp.abspath(str(dst)).startswith(stage_dir):
                count[0] += 1
                if count[0] == int(n):
                    _die()

        os.replace = replace
    elif kind == 'record':
        from bdl_mm.engine.run_state import RunState
        original_save = RunState.save

        def save(self):
            if (self.stages.get(rest) or {}).get('status') == 'done':
                _die()
            original_save(self)

        RunState.save = save
    else:
        raise SystemExit(f'BDL_KILL: unknown kill point {spec!r}')


def _load_train_main():
    sys.path.insert(0, osp.dirname(TRAIN))  # tools/_bootstrap.py
    import _bootstrap  # noqa: F401  (makes the repo importable and imports the stack, as tools/train.py does)
    return runpy.run_path(TRAIN, run_name='tools_train')['main']


def run(main, argv, kill=None) -> None:
    """tools/train.py's ``main`` with ``argv``, killed at ``kill`` (``BDL_KILL``'s syntax) if given.

    Configs are logged and dumped without yapf's formatting: mmengine's ``Config.pretty_text`` spends about 3 s per
    call formatting the BDL config on 2 cores, and calls it 4 times when the run starts and twice per stage; the
    text is the same Python, unformatted."""
    import mmengine.config.config as mmengine_config
    mmengine_config.FormatCode = lambda text, style_config=None, **kwargs: (text, False)
    sys.argv = [TRAIN] + list(argv)
    if kill:
        install(kill)
    main()


def serve() -> None:
    """Import the stack once, then run one job per line of stdin (JSON: ``argv``, ``kill``, ``log``, ``timeout``) in
    a forked child and answer each with a line ``BDL_JOB_DONE {"returncode": ...}`` (``-9``: killed by SIGKILL, as
    ``subprocess`` reports it; ``"timeout"``: killed after ``timeout`` seconds). The imports (about 10 s on 2 cores)
    are paid once; every job is a fresh process of its own, forked before any of them ran anything."""
    import json
    main = _load_train_main()
    for line in sys.stdin:
        job = json.loads(line)
        pid = os.fork()
        if pid == 0:  # the child: one tools/train.py run, its output in the job's log file
            code = 1
            try:
                fd = os.open(job['log'], os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
                os.dup2(fd, 1)
                os.dup2(fd, 2)
                run(main, job['argv'], job.get('kill'))
                code = 0
            except SystemExit as e:
                if e.code not in (None, 0):
                    print(e.code if isinstance(e.code, str) else f'exit {e.code}', file=sys.stderr)
                code = e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
            except BaseException:  # noqa: BLE001 - reported in the job's log, as a process would
                import traceback
                traceback.print_exc()
            finally:
                sys.stdout.flush()
                sys.stderr.flush()
                os._exit(code)
        deadline = time.time() + float(job.get('timeout', 900))
        while True:
            done, status = os.waitpid(pid, os.WNOHANG)
            if done:
                break
            if time.time() > deadline:  # a hung job: killed, reported as such
                os.kill(pid, signal.SIGKILL)
                os.waitpid(pid, 0)
                status = None
                break
            time.sleep(0.05)
        if status is None:
            code = 'timeout'
        else:
            code = -os.WTERMSIG(status) if os.WIFSIGNALED(status) else os.WEXITSTATUS(status)
        print(ANSWER + json.dumps(dict(returncode=code)), flush=True)


if __name__ == '__main__':
    if sys.argv[1:] == ['--serve']:
        serve()
    else:
        run(_load_train_main(), sys.argv[1:], os.environ.get('BDL_KILL'))
