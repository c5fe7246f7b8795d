"""Check that every command in README.md and docs/**/*.md runs as written.

Convention: a fenced block opened with ```` ```bash ```` (or ```` ```shell ````/```` ```sh ````) holds commands, one per
line, ``\\`` continues a line, ``#`` starts a comment, ``&&`` and ``;`` separate commands and leading ``VAR=value``
words set the environment. Every other block (```` ```python ````, ```` ```console ````, a bare ```` ``` ````) is text.
Relative Markdown links of the same files must point at a file of the repository (never outside it).

Each command is checked, and reported, in one of these ways:

- ``make -n``: a make target, checked with ``make -n TARGET`` (nothing is built);
- ``args-checked``: the tool and every repository path it names exist (``configs/``, ``tools/``, ``docs/`` ...), and
  every ``--flag`` is one of the tool's argparse options (read from its source; in full mode also its ``--help``
  runs). Scripts (``bash tools/*.sh``) are syntax-checked and the arguments they pass on to ``tools/train.py`` /
  ``tools/test.py`` are checked against those;
- ``dry-run`` (full mode): ``tools/train.py`` with ``--dry-run --check-data none`` appended and a scratch
  ``--work-dir`` (the plan is built and printed, nothing trains); ``tools/shift_study.py`` with its ``--dry-run``;
- ``ran`` (full mode): a cheap tool run for real on what exists here (the toy data and ``work_dirs/bdl_toy`` of
  ``make toy``), its outputs sent to a scratch folder; where an input it needs is missing (a real data set, a
  checkpoint) it is ``args-checked`` instead, saying what is missing;
- ``env``: a shell step that only sets up the environment (``source .venv/bin/activate``) or an external program
  (``tensorboard``): its repository paths are checked.

    python tools/check_docs.py --quick     # paths, arguments and links only (seconds; tests/test_docs.py)
    python tools/check_docs.py             # full: also runs the commands as above (minutes)

Exit status 1 if any command or link fails, each failure naming its file and line.
"""
import argparse
import ast
import glob
import os
import os.path as osp
import re
import shlex
import shutil
import subprocess
import sys
import tempfile

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
COMMAND_LANGS = ('bash', 'shell', 'sh')
# top-level folders and files of the repository: a command word starting with one of them names a repository path
REPO_DIRS = ('configs/', 'tools/', 'docs/', 'bdl_mm/', 'tests/', 'requirements/')
REPO_FILES = ('Makefile', 'setup.py', 'pyproject.toml', 'README.md')
# words that name files outside the repository: the user's data, checkpoints and run folders
USER_DIRS = ('data/', 'work_dirs/', 'checkpoints/')
OUTPUT_FLAGS = ('--out', '--work-dir', '--json', '--show-dir')
# tools cheap enough to run for real on the toy data / the toy run (full mode)
RUNNABLE = {
    'tools/status.py', 'tools/test.py', 'tools/translate.py', 'tools/pseudo_label.py', 'tools/make_toy_data.py',
    'tools/dataset_converters/gta5.py', 'tools/dataset_converters/cityscapes.py',
    'tools/dataset_converters/synthia.py', 'tools/analysis_tools/get_flops.py', 'tools/analysis_tools/benchmark.py'
}
# positional arguments that are outputs (sent to the scratch folder in full mode)
OUTPUT_POSITIONAL = {'tools/make_toy_data.py': 0}
# scripts that pass their trailing arguments on to a python tool: (tool, number of the script's own arguments,
# indices of those that are repository paths)
PASS_ON = {
    'tools/dist_train.sh': ('tools/train.py', 2, (0, )),
    'tools/slurm_train.sh': ('tools/train.py', 3, (2, )),
    'tools/dist_test.sh': ('tools/test.py', 3, (0, )),
    'tools/slurm_test.sh': ('tools/test.py', 4, (2, )),
    'tools/install.sh': (None, 1, ()),
}
ENV_PROGRAMS = ('source', '.', 'tensorboard')
PYTHONS = ('python', 'python3')


class Command:

    def __init__(self, path, line, text):
        self.path, self.line, self.text = path, line, text
        self.env, self.words = {}, []

    @property
    def where(self):
        return f'{osp.relpath(self.path, ROOT)}:{self.line}'


def doc_files():
    files = [osp.join(ROOT, 'README.md')] + sorted(glob.glob(osp.join(ROOT, 'docs', '**', '*.md'), recursive=True))
    return [f for f in files if osp.isfile(f)]


def extract_commands(path):
    """The commands of the ```bash blocks of one Markdown file, each with the line it starts on."""
    commands, lang, pending, start = [], None, '', 0
    with open(path, encoding='utf-8') as f:
        lines = f.read().splitlines()
    for number, line in enumerate(lines, 1):
        stripped = line.strip()
        if stripped.startswith('```'):
            lang = None if lang is not None else (stripped[3:].strip().lower() or '')
            continue
        if lang not in COMMAND_LANGS:
            continue
        if not pending:
            start = number
        if stripped.endswith('\\'):
            pending += stripped[:-1] + ' '
            continue
        text = (pending + stripped).strip()
        pending = ''
        if text and not text.startswith('#'):
            commands.extend(split_command(path, start, text))
    return commands


def split_command(path, line, text):
    """Split one line on ``&&`` / ``;`` into commands; strip comments; take leading ``VAR=value`` as environment."""
    lexer = shlex.shlex(text, posix=True, punctuation_chars=';&|')
    lexer.whitespace_split = True
    lexer.commenters = '#'
    parts, current = [], []
    for word in lexer:
        if word in ('&&', ';'):
            parts.append(current)
            current = []
        else:
            current.append(word)
    parts.append(current)
    commands = []
    for words in parts:
        if not words:
            continue
        cmd = Command(path, line, text)
        while words and re.fullmatch(r'[A-Za-z_][A-Za-z0-9_]*=.*', words[0]):
            key, value = words.pop(0).split('=', 1)
            cmd.env[key] = value
        cmd.words = words
        if words:
            commands.append(cmd)
    return commands


def _options_in(node):
    options = set()
    for sub in ast.walk(node):
        if isinstance(sub, ast.Call) and isinstance(sub.func, ast.Attribute) and sub.func.attr == 'add_argument':
            for arg in sub.args:
                if isinstance(arg, ast.Constant) and isinstance(arg.value, str) and arg.value.startswith('-'):
                    options.add(arg.value)
    return options


def _module_file(module, tool):
    """The source file of an imported module of the package or of the tool's own folder, if any."""
    candidates = [osp.join(ROOT, *module.split('.'))] + [osp.join(ROOT, osp.dirname(tool), *module.split('.'))]
    for base in candidates:
        for path in (base + '.py', osp.join(base, '__init__.py')):
            if osp.isfile(path):
                return path
    return None


def argparse_options(tool):
    """Every option string a tool's argparse parser defines (``*.add_argument('--x', ...)``), read from its source
    and from the functions it imports from the package to add arguments (e.g. ``add_conversion_args``)."""
    with open(osp.join(ROOT, tool), encoding='utf-8') as f:
        tree = ast.parse(f.read())
    options = {'-h', '--help'} | _options_in(tree)
    called = {n.func.id for n in ast.walk(tree) if isinstance(n, ast.Call) and isinstance(n.func, ast.Name)}
    for node in ast.walk(tree):
        if not (isinstance(node, ast.ImportFrom) and node.module):
            continue
        names = {alias.name for alias in node.names} & called
        path = _module_file(node.module, tool) if names else None
        if path is None:
            continue
        with open(path, encoding='utf-8') as f:
            module = ast.parse(f.read())
        for fn in module.body:
            if isinstance(fn, ast.FunctionDef) and fn.name in names:
                options |= _options_in(fn)
    return options


def repo_paths(words):
    """The words (or values of ``key=value`` words) that name a repository path."""
    found = []
    for word in words:
        for part in [word] + ([word.split('=', 1)[1]] if '=' in word else []):
            if part.startswith(REPO_DIRS) or part in REPO_FILES:
                found.append(part)
    return found


def user_paths(words):
    found = []
    for word in words:
        for part in [word] + ([word.split('=', 1)[1]] if '=' in word else []):
            if part.startswith(USER_DIRS):
                found.append(part)
    return found


def check_paths(words):
    return [f'{p} does not exist' for p in repo_paths(words) if not osp.exists(osp.join(ROOT, p.rstrip('/')))]


def check_flags(tool, args):
    options = argparse_options(tool)
    errors = []
    for word in args:
        if word.startswith('-') and not re.fullmatch(r'-\d+(\.\d+)?', word):
            flag = word.split('=', 1)[0]
            if flag not in options:
                errors.append(f'{tool} has no option {flag}')
    return errors


def output_values(tool, args):
    """Indices of the words that are outputs of the tool: values of --out/--work-dir/--json and output
    positionals."""
    indices, positional = set(), 0
    i = 0
    while i < len(args):
        word = args[i]
        if word in OUTPUT_FLAGS and i + 1 < len(args):
            indices.add(i + 1)
            i += 2
            continue
        if word.startswith('-'):
            # skip the values of an option (everything up to the next option)
            i += 1
            while i < len(args) and not args[i].startswith('-'):
                i += 1
            continue
        if OUTPUT_POSITIONAL.get(tool) == positional:
            indices.add(i)
        positional += 1
        i += 1
    return indices


class Checker:

    def __init__(self, full, python, timeout):
        self.full, self.python, self.timeout = full, python, timeout
        self.scratch = tempfile.mkdtemp(prefix='check_docs_') if full else None
        self.results = []  # (command, status, note)
        self.failures = []

    def record(self, cmd, status, note=''):
        self.results.append((cmd, status, note))
        print(f'{cmd.where:<45} {status:<13} {" ".join(cmd.words)}' + (f'  [{note}]' if note else ''), flush=True)

    def fail(self, cmd, reason):
        self.failures.append(f'{cmd.where}: {reason}: {" ".join(cmd.words)}')
        self.record(cmd, 'FAIL', reason)

    def run(self, cmd, argv, env_extra=None):
        env = dict(os.environ, OMP_NUM_THREADS=os.environ.get('OMP_NUM_THREADS', '1'))
        env.update(cmd.env)  # the command's own VAR=value prefix wins
        env.update(env_extra or {})
        try:
            proc = subprocess.run(argv, cwd=ROOT, env=env, capture_output=True, text=True, timeout=self.timeout)
        except subprocess.TimeoutExpired:
            return 124, f'timed out after {self.timeout} s'
        tail = (proc.stdout + proc.stderr).strip().splitlines()[-3:]
        return proc.returncode, ' | '.join(tail)

    def check(self, cmd):
        program = cmd.words[0]
        if program == 'make':
            return self.check_make(cmd)
        if program == 'bash' and len(cmd.words) > 1:
            return self.check_script(cmd)
        if program in PYTHONS and len(cmd.words) > 1 and cmd.words[1].endswith('.py'):
            return self.check_python(cmd, cmd.words[1], cmd.words[2:])
        if program in ENV_PROGRAMS:
            errors = check_paths(cmd.words[1:])
            return self.fail(cmd, '; '.join(errors)) if errors else self.record(cmd, 'env')
        return self.fail(cmd, f'unknown program {program!r} (not make, bash tools/*.sh or python tools/*.py)')

    def check_make(self, cmd):
        targets = [w for w in cmd.words[1:] if not w.startswith('-') and '=' not in w]
        code, tail = self.run(cmd, ['make', '-n'] + cmd.words[1:])
        if code != 0:
            return self.fail(cmd, f'make -n {" ".join(targets)} failed: {tail}')
        self.record(cmd, 'make -n')

    def check_script(self, cmd):
        script, args = cmd.words[1], cmd.words[2:]
        errors = check_paths([script])
        if errors:
            return self.fail(cmd, '; '.join(errors))
        code, tail = self.run(cmd, ['bash', '-n', script])
        if code != 0:
            return self.fail(cmd, f'bash -n {script}: {tail}')
        if script in PASS_ON:
            tool, own, path_indices = PASS_ON[script]
            errors = check_paths([args[i] for i in path_indices if i < len(args)])
            if tool is not None:
                errors += check_flags(tool, args[own:]) + check_paths(args[own:])
            if len(args) < len(path_indices) or (tool is not None and len(args) < own):
                errors.append(f'{script} takes {own} arguments before the tool\'s own')
            if errors:
                return self.fail(cmd, '; '.join(errors))
        self.record(cmd, 'args-checked', 'script: bash -n')

    def check_python(self, cmd, tool, args):
        errors = check_paths([tool])
        if errors:
            return self.fail(cmd, '; '.join(errors))
        errors = check_flags(tool, args) + check_paths(args)
        if errors:
            return self.fail(cmd, '; '.join(errors))
        if not self.full:
            return self.record(cmd, 'args-checked')
        if tool == 'tools/train.py':
            return self.dry_run_train(cmd, args)
        if tool == 'tools/shift_study.py':
            return self.dry_run_tool(cmd, tool, args)
        if tool in RUNNABLE:
            outputs = output_values(tool, args)
            missing = [p for i, p in enumerate(args) if i not in outputs and p in user_paths([p])
                       and not osp.exists(osp.join(ROOT, p))]
            for word in args:  # key=value paths (e.g. load_from=checkpoints/...)
                if '=' in word and not word.startswith('-'):
                    missing += [p for p in user_paths([word.split('=', 1)[1]]) if not osp.exists(osp.join(ROOT, p))]
            if not missing:
                return self.run_for_real(cmd, tool, args, outputs)
            return self.help_check(cmd, tool, f'needs {", ".join(missing)}')
        return self.help_check(cmd, tool, 'not run: long or needs data')

    def help_check(self, cmd, tool, note):
        code, tail = self.run(cmd, [self.python, tool, '--help'])
        if code != 0:
            return self.fail(cmd, f'{tool} --help failed: {tail}')
        self.record(cmd, 'args-checked', note)

    def scratch_dir(self, cmd, name):
        return osp.join(self.scratch, f'{osp.basename(cmd.path)}_{cmd.line}_{len(self.results)}', name)

    def dry_run_train(self, cmd, args):
        args = list(args)
        if '--work-dir' in args:
            i = args.index('--work-dir')
            del args[i:i + 2]
        args += ['--work-dir', self.scratch_dir(cmd, 'work_dir')]
        # a checkpoint that is not on this machine (load_from=checkpoints/...) is left out of the check form
        dropped = [w for w in args if '=' in w and not w.startswith('-')
                   and any(not osp.exists(osp.join(ROOT, p)) for p in user_paths([w.split('=', 1)[1]]))]
        # ... with the options that set the same dict (init_cfg.type=Pretrained without its checkpoint would not build)
        parents = tuple(w.split('=', 1)[0].rsplit('.', 1)[0] + '.' for w in dropped if '.' in w.split('=', 1)[0])
        dropped += [w for w in args if w not in dropped and '=' in w and not w.startswith('-') and parents
                    and w.split('=', 1)[0].startswith(parents)]
        args = [w for w in args if w not in dropped]
        if '--cfg-options' in args and args.index('--cfg-options') + 1 in (len(args), ) + tuple(
                i for i, w in enumerate(args) if w.startswith('-')):
            args.remove('--cfg-options')
        if '--dry-run' not in args:
            args.append('--dry-run')
        if '--check-data' not in args:
            args += ['--check-data', 'none']
        code, tail = self.run(cmd, [self.python, 'tools/train.py'] + args)
        if code != 0 and 'applies to Algorithm-1' in tail:  # a single M or F config: no plan to print
            return self.help_check(cmd, 'tools/train.py', 'single-stage config: no --dry-run')
        if code != 0:
            return self.fail(cmd, f'--dry-run failed: {tail}')
        self.record(cmd, 'dry-run', f'without {", ".join(dropped)} (not here)' if dropped else '')

    def dry_run_tool(self, cmd, tool, args):
        args = list(args)
        if '--work-dir' in args:
            i = args.index('--work-dir')
            del args[i:i + 2]
        args += ['--work-dir', self.scratch_dir(cmd, 'work_dir'), '--dry-run']
        code, tail = self.run(cmd, [self.python, tool] + args)
        if code != 0:
            return self.fail(cmd, f'--dry-run failed: {tail}')
        self.record(cmd, 'dry-run')

    def run_for_real(self, cmd, tool, args, outputs):
        args = [self.scratch_dir(cmd, f'out{i}') if i in outputs else word for i, word in enumerate(args)]
        code, tail = self.run(cmd, [self.python, tool] + args)
        if code != 0:
            return self.fail(cmd, f'exit {code}: {tail}')
        self.record(cmd, 'ran')

    def close(self):
        if self.scratch:
            shutil.rmtree(self.scratch, ignore_errors=True)


LINK = re.compile(r'\[[^\]]*\]\(([^)\s]+)\)')


def check_links(path):
    """Relative links must name a file of the repository; nothing may point outside it."""
    errors = []
    in_code = False
    with open(path, encoding='utf-8') as f:
        lines = f.read().splitlines()
    for number, line in enumerate(lines, 1):
        if line.strip().startswith('```'):
            in_code = not in_code
            continue
        if in_code:
            continue
        where = f'{osp.relpath(path, ROOT)}:{number}'
        for target in LINK.findall(line):
            if re.match(r'[a-z]+://|mailto:|#', target):
                continue
            resolved = osp.normpath(osp.join(osp.dirname(path), target.split('#')[0]))
            if not (resolved + os.sep).startswith(ROOT + os.sep):
                errors.append(f'{where}: link {target} points outside the repository')
            elif not osp.exists(resolved):
                errors.append(f'{where}: link {target} does not exist')
    return errors


OUTSIDE = re.compile(r'(\.\./)+shared/|\bshared/[A-Z][A-Z_]*\.md')
SKIP_DIRS = {'.git', '.venv', 'work_dirs', 'data', 'checkpoints', '__pycache__', 'node_modules', 'build', 'dist'}
TEXT_SUFFIXES = ('.md', '.py', '.sh', '.txt', '.yaml', '.yml', '.toml', '.cfg', 'Makefile')


def check_outside_mentions():
    """No file of the repository may name a file outside it (a project's shared notes a clone does not have)."""
    errors = []
    for folder, dirs, files in os.walk(ROOT):
        dirs[:] = [d for d in dirs if d not in SKIP_DIRS and not d.startswith('.')]
        for name in files:
            if not name.endswith(TEXT_SUFFIXES):
                continue
            path = osp.join(folder, name)
            try:
                with open(path, encoding='utf-8') as f:
                    lines = f.read().splitlines()
            except (UnicodeDecodeError, OSError):
                continue
            for number, line in enumerate(lines, 1):
                if OUTSIDE.search(line):
                    errors.append(f'{osp.relpath(path, ROOT)}:{number}: names a file outside the repository '
                                  f'({line.strip()[:70]})')
    return errors


def main(argv=None):
    parser = argparse.ArgumentParser(description='Check that every command in README.md and docs/ runs as written')
    parser.add_argument('--quick', action='store_true', help='paths, arguments and links only; run nothing')
    parser.add_argument('--python', default=None, help='interpreter for the tools (default: .venv/bin/python)')
    parser.add_argument('--timeout', type=int, default=600, help='seconds per command (full mode)')
    parser.add_argument('files', nargs='*', help='Markdown files (default: README.md and docs/**/*.md)')
    args = parser.parse_args(argv)
    python = args.python or (osp.join(ROOT, '.venv', 'bin', 'python')
                             if osp.exists(osp.join(ROOT, '.venv', 'bin', 'python')) else sys.executable)
    files = [osp.abspath(f) for f in args.files] or doc_files()
    checker = Checker(full=not args.quick, python=python, timeout=args.timeout)
    link_errors = [] if args.files else check_outside_mentions()
    try:
        for path in files:
            link_errors += check_links(path)
            for cmd in extract_commands(path):
                checker.check(cmd)
    finally:
        checker.close()
    counts = {}
    for _, status, _ in checker.results:
        counts[status] = counts.get(status, 0) + 1
    print(f'\n{len(checker.results)} commands in {len(files)} files ({"quick" if args.quick else "full"}): '
          + ', '.join(f'{n} {s}' for s, n in sorted(counts.items())))
    for error in link_errors:
        print(f'FAIL {error}')
    for failure in checker.failures:
        print(f'FAIL {failure}')
    return 1 if checker.failures or link_errors else 0


if __name__ == '__main__':
    sys.exit(main())
