"""Shared by every test folder: this folder is on sys.path (pytest's prepend import mode), so the helpers in
tests/toy_helpers.py import as `toy_helpers`."""
import os

# Tests are sized for 2 cores: one thread per process keeps parallel subprocesses from oversubscribing them.
os.environ.setdefault('OMP_NUM_THREADS', '1')
