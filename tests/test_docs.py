"""Every command in README.md and docs/ runs as written: ``tools/check_docs.py --quick`` (the tools and repository
paths each command names exist, each ``--flag`` is one of its tool's options, ``make`` targets pass ``make -n``,
relative links resolve inside the repository). The full check, which runs the commands, is run by hand:
``python tools/check_docs.py``."""
import os.path as osp
import subprocess
import sys

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
CHECK = osp.join(ROOT, 'tools', 'check_docs.py')


def run_check(*args):
    return subprocess.run([sys.executable, CHECK, '--quick', *args], cwd=ROOT, capture_output=True, text=True,
                          timeout=120)


def test_every_documented_command_passes_the_quick_check():
    proc = run_check()
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-2000:]
    assert 'FAIL' not in proc.stdout


def test_readme_fits_one_screen():
    with open(osp.join(ROOT, 'README.md'), encoding='utf-8') as f:
        assert len(f.read().splitlines()) <= 150


def test_the_check_names_the_file_and_line_of_a_broken_command(tmp_path):
    doc = tmp_path / 'broken.md'
    doc.write_text('# t\n\n[gone](../../nowhere/STACK.md)\n\n```bash\nmake toy\n'
                   'python tools/train.py configs/no_such_config.py\n'
                   'python tools/status.py work_dirs/x --no-such-flag\n```\n\n```python\nnot a command\n```\n')
    proc = run_check(str(doc))
    assert proc.returncode == 1
    out = proc.stdout
    assert 'broken.md:7: configs/no_such_config.py does not exist' in out
    assert 'broken.md:8: tools/status.py has no option --no-such-flag' in out
    assert 'broken.md:3: link ../../nowhere/STACK.md points outside the repository' in out
    assert 'not a command' not in out
    assert '3 commands' in out
