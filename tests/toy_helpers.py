"""Helpers of the dataset tests: import tools/ scripts, make converted toy data in the real on-disk formats."""
import importlib.util
import os.path as osp
import sys

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))


def load_tool(rel_path):
    """Import a script under tools/ as a module."""
    name = 'tool_' + rel_path.replace('/', '_').replace('.py', '')
    spec = importlib.util.spec_from_file_location(name, osp.join(ROOT, 'tools', rel_path))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def run_tool(rel_path, *argv):
    module = load_tool(rel_path)
    old = sys.argv
    sys.argv = [rel_path, *map(str, argv)]
    try:
        module.main()
    finally:
        sys.argv = old


def make_converted_toy(out_dir, **kwargs):
    load_tool('make_toy_data.py').make_toy_data(str(out_dir), **kwargs)
    run_tool('dataset_converters/gta5.py', osp.join(out_dir, 'gta5'))
    run_tool('dataset_converters/cityscapes.py', osp.join(out_dir, 'cityscapes'))
    return str(out_dir)
